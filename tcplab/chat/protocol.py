"""
The chat's Twisted side: a thin line protocol over L{ChatHub}.

L{ChatProtocol} turns lines into hub calls, takes its room's broadcasts
once per reactor iteration (L{tcplab.chat.fanout}: rendered once for the
whole room), renders what is addressed to it alone and enforces
the per-connection safety rules: the line length limit (an over-long line
is refused, the connection stays), flood control (a token bucket that every
line received spends; persistent flooders are disconnected) and a bound on
output queued for a client that stops reading (it is disconnected instead
of growing the server's memory).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from tcplab.addresses import describeAddress
from tcplab.auth import Authenticator, LoginFailed
from tcplab.chat import commands, names, wire
from tcplab.chat.events import Delivery
from tcplab.chat.flood import TokenBucket
from tcplab.chat.hub import ChatError, ChatHub
from tcplab.chat.joins import DelayedJoins
from tcplab.interfaces import IGracefulStop, IRefusalFormat, IRoomBatchMember
from tcplab.lines import LineProtocol
from tcplab.metrics import Metrics
from tcplab.reactors import defaultReactor
from tcplab.sending import WriteBatch

MAX_LINE = 512
"""Longest accepted line in bytes, without its line end (as IRC)."""

FLOOD_RATE = 5.0
"""Lines per second a connection may send on average."""

FLOOD_BURST = 10.0
"""Lines a connection may send at once (a pasted block)."""

MAX_PENDING = 256 * 1024
"""Bytes that may queue for a client that stopped reading before it is cut."""

JOIN_DELAY = 0.25
"""Seconds to wait for a first ``/nohistory`` or ``/nick`` before joining the default room."""


@implementer(IPushProducer, IGracefulStop, IRoomBatchMember)
class ChatProtocol(LineProtocol):
    """
    One chat connection: a hub participant speaking the line protocol of
    docs/chat.md.

    Its output is batched per reactor iteration in the factory's
    L{WriteBatch} (one C{send} per iteration); its room's broadcasts reach
    it through the room's feed (L{tcplab.chat.fanout}), not one
    L{receive} per line.
    """

    log = Logger()
    factory: ChatFactory
    transport: Any
    joined = False
    closing = False

    # Per-connection state an idle connection does without: thousands of
    # connected-but-quiet clients are the common case, so the defaults live
    # on the class and an instance only gets its own when it needs one.
    bucket: TokenBucket | None = None
    """Flood control, made with the first line the client sends."""
    dropped = 0
    """Lines refused by flood control in a row."""
    readerPaused = False
    """The transport's buffer is full: the client is not reading."""
    pending = 0
    """Bytes queued since the client stopped reading."""
    outputClosed = False
    """The connection is going away: output is dropped."""
    loginPending = False
    """A first-line C{/nick} waits for its password check before the join."""

    @property
    def maxLineLength(self) -> int:  # type: ignore[override]
        """The factory's line length limit."""
        return self.factory.maxLine

    @property
    def peer(self) -> str:
        """The client's address, for logs."""
        return describeAddress(self.transport.getPeer())

    @property
    def nick(self) -> str:
        """Our nickname, as the hub knows it (for logs)."""
        try:
            return self.factory.hub.nickOf(self)
        except ChatError:
            return "?"

    def connectionMade(self) -> None:
        """Greet, take a guest nickname, and join the default room shortly."""
        factory = self.factory
        # The transport pauses us when its buffer is full: that is how a
        # client that stopped reading is noticed (see pauseProducing).
        self.transport.registerProducer(self, True)
        nick = factory.hub.connect(self)
        factory.writeBatch.deliver(
            self, wire.notice(f"Welcome to tcplab chat, {nick}. Type /help for commands.")
        )
        factory.delayedJoins.add(self)

    def joinWhenDue(self) -> None:
        """
        The wait after arriving is over (L{tcplab.chat.joins}): join the
        default room, unless this connection joined already, has gone, or
        is logging in (it joins once the login is answered).
        """
        if not self.loginPending:
            self.joinDefault(True)

    def joinDefault(self, withHistory: bool) -> None:
        """Join the default room (once)."""
        if self.joined or self.closing:
            return
        self.joined = True
        self.factory.hub.join(self, self.factory.hub.defaultRoom, withHistory)

    # Output

    @property
    def writeBatch(self) -> WriteBatch:
        """Where this connection's output waits for the end of the reactor iteration."""
        return self.factory.writeBatch

    def receive(self, delivery: Delivery) -> None:
        """
        Render what the hub hands us (a private message, a notice, a history
        replay; every event if the room cannot feed us) and queue it.
        """
        self.reply(self.factory.render(delivery))

    def reply(self, data: bytes) -> None:
        """
        Queue a line made for this connection only (errors, command replies),
        after what our room said before it (L{ChatHub.catchUp}).
        """
        factory = self.factory
        factory.hub.catchUp(self)
        factory.writeBatch.deliver(self, data)

    def send(self, data: bytes) -> None:
        """
        Write C{data} now; while the client is not reading, count it, and
        disconnect the client once more than C{maxPending} bytes wait.
        """
        if self.outputClosed:
            return
        if self.readerPaused:
            self.pending += len(data)
            if self.pending > self.factory.maxPending:
                self.log.warn(
                    "{peer} ({nick}) is not reading: {pending} bytes queued, disconnecting",
                    peer=self.peer,
                    nick=self.nick,
                    pending=self.pending,
                )
                self.outputClosed = True
                self.transport.abortConnection()
                return
        self.transport.write(data)

    # Slow consumers: the transport tells us when its buffer is full.

    def pauseProducing(self) -> None:
        """The client is not reading: count what queues up from now on."""
        self.readerPaused = True

    def resumeProducing(self) -> None:
        """The client caught up."""
        self.readerPaused = False
        self.pending = 0

    def stopProducing(self) -> None:
        """The connection is going away."""
        self.outputClosed = True

    # Input

    def lineReceived(self, line: bytes) -> None:
        """Sanitise the line, count it, then run it as a command or relay it."""
        # Invisible characters (a BOM, zero-width spaces) are gone before the
        # line is looked at, so "\ufeff/nick alice PASSWORD" is a command.
        text = wire.sanitize(wire.decode(line))
        if self.factory.floodRate and not self.allowedByFloodControl():
            return
        command = wire.parseCommand(text)
        if not self.joined:
            if command == ("nohistory", ""):
                self.joinDefault(False)
                return
            if command is not None and command[0] == "nick":
                # Join under the chosen nickname, not as guestN first.
                self.runSafely(command)
                if not self.loginPending:
                    self.joinDefault(True)
                return
            self.joinDefault(True)
        if not text:
            return
        if command is not None:
            self.runSafely(command)
        elif text.lower() == "exit":
            self.quit("exit")
        else:
            self.runSafely(None, wire.messageText(text))

    def runSafely(self, command: tuple[str, str] | None, message: str = "") -> None:
        """Run a command (or say C{message}), turning a refusal into an error line."""
        try:
            if command is not None:
                commands.run(self, *command)
            else:
                self.factory.hub.say(self, message)
                self.factory.metrics.increment(commands.MESSAGES, kind="message")
        except ChatError as e:
            self.reply(wire.error(str(e)))

    def allowedByFloodControl(self) -> bool:
        """Spend a token; warn, and eventually disconnect, a flooder."""
        if self.bucket is None:
            factory = self.factory
            self.bucket = TokenBucket(
                factory.floodRate, factory.floodBurst, factory.reactor.seconds
            )
        wait = self.bucket.take()
        if not wait:
            self.dropped = 0
            return True
        self.dropped += 1
        if self.dropped == 1:
            self.reply(wire.error(f"slow down: wait {wait:.1f}s (that line was not sent)"))
        if self.dropped > 3 * self.factory.floodBurst:
            self.log.warn(
                "{peer} ({nick}) flooding, disconnecting", peer=self.peer, nick=self.nick
            )
            self.reply(wire.error("disconnected for flooding"))
            self.quit("flooding")
        return False

    def lineTooLong(self, size: int) -> None:
        """Refuse the line (it counts against flood control); the connection stays."""
        if self.factory.floodRate and not self.allowedByFloodControl():
            return
        self.reply(
            wire.error(f"line too long ({size} bytes, at most {self.maxLineLength}); not sent")
        )

    def changeNick(self, nick: str, password: str) -> None:
        """
        Rename, checking the password when the nickname is an account's --
        in any case, normalisation or look-alike form of the account name.
        """
        if names.normalizeNick(nick) is None:
            raise ChatError(f"invalid nickname {nick!r}: {names.NICK_RULES}")
        account = self.factory.accountFor(nick)
        if account is None:
            self.factory.hub.rename(self, nick)
            return
        if not password:
            raise ChatError(f"{nick} is a registered nickname: /nick {nick} PASSWORD")
        self.loginPending = not self.joined
        d = defer.ensureDeferred(self.factory.authenticator.login(account, password, self.peer))

        def loggedIn(_: object) -> None:
            """Take the nickname (unless it was taken meanwhile)."""
            if not self.closing:
                try:
                    self.factory.hub.rename(self, nick)
                except ChatError as e:
                    self.reply(wire.error(str(e)))

        def failed(failure: Failure) -> None:
            """Say the password was wrong."""
            failure.trap(LoginFailed)
            if not self.closing:
                self.reply(wire.error(f"wrong password for {nick}"))

        def joinNow(_: object) -> None:
            """A first-line login is answered: join now."""
            if self.loginPending:
                self.loginPending = False
                self.joinDefault(True)

        d.addCallbacks(loggedIn, failed).addBoth(joinNow)

    def quit(self, reason: str) -> None:
        """Leave the chat and close the connection once our output is sent."""
        if self.closing:
            return
        self.closing = True
        self.factory.hub.disconnect(self, reason)
        self.reply(wire.notice("bye"))
        self.factory.writeBatch.flushNow(self)
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def serverStopping(self) -> None:
        """The server is shutting down: tell the user, then leave."""
        self.reply(wire.notice("server shutting down, bye"))
        self.quit("server shutting down")

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Announce a vanished client as gone and forget it everywhere."""
        self.outputClosed = True
        if not self.closing:
            self.closing = True
            why = "connection lost" if reason is None else reason.getErrorMessage()
            self.factory.hub.disconnect(self, why.rstrip("."))
        # After leaving the room, which hands us what it said meanwhile.
        self.factory.writeBatch.discard(self)


@implementer(IRefusalFormat)
class ChatFactory(Factory):
    """
    Build chat connections around one L{ChatHub}.

    @ivar hub: the shared rooms and nicknames (embed it, or pass your own).
    @ivar render: turns what the hub delivers into bytes, once per event.
    @ivar writeBatch: the output of every connection for one reactor
        iteration (see L{tcplab.sending.WriteBatch}).
    @ivar delayedJoins: the newcomers waiting C{joinDelay} seconds before
        they join the default room (see L{tcplab.chat.joins}).
    """

    noisy = False

    def __init__(
        self,
        hub: ChatHub | None = None,
        maxLine: int = MAX_LINE,
        floodRate: float = FLOOD_RATE,
        floodBurst: float = FLOOD_BURST,
        maxPending: int = MAX_PENDING,
        authenticator: Authenticator | None = None,
        metrics: Metrics | None = None,
        joinDelay: float = JOIN_DELAY,
        reactor: Any = None,
    ) -> None:
        reactor = defaultReactor(reactor)
        self.hub = hub if hub is not None else ChatHub()
        self.maxLine = maxLine
        self.floodRate = floodRate
        self.floodBurst = max(floodBurst, 1.0)
        self.maxPending = maxPending
        self.authenticator = authenticator or Authenticator([], reactor)
        self.metrics = metrics or Metrics("tcplab-chat")
        self.metrics.describe(commands.MESSAGES, "counter", "Chat messages relayed, by kind.")
        self.joinDelay = joinDelay
        self.delayedJoins = DelayedJoins(reactor, joinDelay)
        self.reactor = reactor
        self.render = wire.Renderer()
        self.writeBatch = WriteBatch(reactor)

    def accountFor(self, nick: str) -> str | None:
        """
        The account whose name C{nick} is a form of -- the same ignoring case
        and normalisation, or a look-alike -- if C{--auth} lists one.
        """
        if not self.authenticator.enabled:
            return None
        key, skeleton = names.nickKey(nick), names.skeleton(nick)
        for account in self.authenticator.accountNames():
            if names.nickKey(account) == key or names.skeleton(account) == skeleton:
                return account
        return None

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        """A new connection."""
        protocol = ChatProtocol()
        protocol.factory = self
        return protocol

    @staticmethod
    def refusal(reason: str) -> bytes:
        """What a peer refused by a connection limit is told."""
        return wire.error(reason)
