"""
The Lua scripts the chat cluster runs in Redis, each one atomic.

Every record a node publishes carries the node's id and a sequence number;
the scripts apply a record at most once (a record resent after a lost
reply is recognised by its sequence number), so whatever the connection
does, each line is in the stream exactly once, in the order sent.

Keys, under the cluster's prefix (C{tcplab:chat:}): C{events} (the
stream), C{seqs} (hash: node -> last sequence applied), C{members:NODE}
(hash: member id -> JSON of nick and room, for a node that starts later),
C{history:ROOM} (list of JSON lines), C{rooms} (set of rooms with history),
C{nick:SKELETON} (string: the owning node, with an expiry), C{alive:NODE}
(expires unless refreshed by the node's heartbeat), C{nodes} (set).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

STREAM_LENGTH = 100_000
"""Records the stream keeps (approximately): how far behind a reader may fall."""

HISTORY_EXPIRY = 7 * 24 * 3600
"""Seconds a room's shared history stays in Redis after its last line."""

Call = tuple[str, list[str], list[str | int]]
"""A script with its keys and arguments, ready for C{EVAL}."""

_ONCE = """
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= last then return 1 end
"""

_APPEND = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[4], '*', 'n', ARGV[1], 's', ARGV[2], 'd', ARGV[3])
"""

PUBLISH = (
    _ONCE
    + _APPEND
    + """
if ARGV[5] == 'set' then
  redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
elseif ARGV[5] == 'del' then
  redis.call('HDEL', KEYS[3], ARGV[6])
end
if ARGV[8] ~= '' then
  redis.call('RPUSH', KEYS[4], ARGV[8])
  redis.call('LTRIM', KEYS[4], -tonumber(ARGV[9]), -1)
  redis.call('EXPIRE', KEYS[4], ARGV[11])
  redis.call('SADD', KEYS[5], ARGV[10])
end
return 1
"""
)
"""
Append one record.  KEYS: events, seqs, members, history, rooms.  ARGV:
node, seq, record, maxlen, member op (set/del/empty), member id, member
value, history entry (or empty), history size, room, history expiry (s).
"""

CLAIM = (
    _ONCE
    + """
local owner = redis.call('GET', KEYS[4])
if owner and owner ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[4], ARGV[1], 'PX', ARGV[7])
if KEYS[5] ~= KEYS[4] and redis.call('GET', KEYS[5]) == ARGV[1] then
  redis.call('DEL', KEYS[5])
end
"""
    + _APPEND
    + """
redis.call('HSET', KEYS[3], ARGV[5], ARGV[6])
return 1
"""
)
"""
Claim a nickname and, if it is ours, release the old one and append the
record.  KEYS: events, seqs, members, new nick key, old nick key.  ARGV:
node, seq, record, maxlen, member id, member value, claim ttl (ms).
Returns 1 (ours) or 0 (another node holds it: nothing was done).
"""

QUIT = (
    _ONCE
    + """
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
redis.call('HDEL', KEYS[3], ARGV[5])
"""
    + _APPEND
    + "return 1\n"
)
"""
A member left: release its nickname, forget it, append the record.  KEYS:
events, seqs, members, nick key.  ARGV: node, seq, record, maxlen, member id.
"""

HEARTBEAT = """
local p, node, ttl = ARGV[1], ARGV[2], ARGV[3]
redis.call('SET', p .. 'alive:' .. node, '1', 'PX', ttl)
redis.call('SADD', p .. 'nodes', node)
local claims = tonumber(ARGV[4])
local lost = {}
for i = 5, 4 + claims do
  local key = p .. 'nick:' .. ARGV[i]
  local owner = redis.call('GET', key)
  if not owner then
    redis.call('SET', key, node, 'PX', ttl)
  elseif owner == node then
    redis.call('PEXPIRE', key, ttl)
  else
    table.insert(lost, ARGV[i])
  end
end
local dead = {}
for i = 5 + claims, #ARGV do
  if redis.call('EXISTS', p .. 'alive:' .. ARGV[i]) == 0 then
    table.insert(dead, ARGV[i])
    redis.call('SREM', p .. 'nodes', ARGV[i])
    redis.call('DEL', p .. 'members:' .. ARGV[i])
  end
end
return {lost, dead}
"""
"""
A node's heartbeat: say it is alive, keep (or re-take) its nickname claims,
and find which of the other nodes it knows have stopped beating.  ARGV:
prefix, node, ttl (ms), number of claims, the claims' keys, then the other
nodes.  Returns the claims another node holds and the dead nodes.
"""


class Calls:
    """The script calls of one node: which keys and arguments each record takes."""

    def __init__(self, prefix: str, node: str) -> None:
        self.prefix = prefix
        self.node = node

    def key(self, name: str) -> str:
        """A key under the cluster's prefix."""
        return self.prefix + name

    def _common(self, seq: int, record: Mapping[str, object]) -> tuple[list[str], list[str | int]]:
        keys = [self.key("events"), self.key("seqs"), self.key(f"members:{self.node}")]
        return keys, [self.node, seq, json.dumps(record), STREAM_LENGTH]

    def publish(
        self,
        seq: int,
        record: Mapping[str, object],
        member: tuple[str, str, str] | None,
        history: tuple[str, str] | None,
        historySize: int,
    ) -> Call:
        """L{PUBLISH} a record, with a members-table change and a history line."""
        op, memberId, value = member or ("", "", "")
        room, entry = history or ("", "")
        keys, args = self._common(seq, record)
        keys += [self.key(f"history:{room}"), self.key("rooms")]
        args += [op, memberId, value, entry, historySize, room, HISTORY_EXPIRY]
        return PUBLISH, keys, args

    def claim(
        self,
        seq: int,
        record: Mapping[str, object],
        memberId: str,
        memberValue: str,
        newKey: str,
        oldKey: str,
        ttl: float,
    ) -> Call:
        """L{CLAIM} a nickname key (releasing C{oldKey}) and publish the record if ours."""
        keys, args = self._common(seq, record)
        keys += [self.key(f"nick:{newKey}"), self.key(f"nick:{oldKey}")]
        args += [memberId, memberValue, int(ttl * 1000)]
        return CLAIM, keys, args

    def quit(self, seq: int, record: Mapping[str, object], memberId: str, key: str) -> Call:
        """L{QUIT}: a member left; release its nickname key."""
        keys, args = self._common(seq, record)
        keys.append(self.key(f"nick:{key}"))
        args.append(memberId)
        return QUIT, keys, args
