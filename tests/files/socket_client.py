"""
A complete tcplab-files client using only socket, struct, json and hashlib,
as the tutorials would write it -- the proof that docs/protocol.md is enough.
"""

import hashlib
import json
import struct


def send(sock, payload):
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("server closed the connection")
        data += chunk
    return data


def recv_frame(sock):
    (length,) = struct.unpack(">I", recv_exact(sock, 4))
    return recv_exact(sock, length)


def request(sock, message):
    send(sock, json.dumps(message).encode())
    reply = json.loads(recv_frame(sock))
    if not reply["ok"]:
        raise OSError(f"{reply['error']}: {reply['message']}")
    return reply


def listing(sock, path=""):
    page = request(sock, {"op": "list", "path": path})
    entries = page["entries"]
    while page["more"]:  # a big directory comes in several pages
        page = json.loads(recv_frame(sock))
        if not page["ok"]:
            raise OSError(f"{page['error']}: {page['message']}")
        entries += page["entries"]
    return entries


def download(sock, name, out):
    header = request(sock, {"op": "get", "path": name, "offset": 0})
    digest = hashlib.sha256()
    while True:
        frame = recv_frame(sock)
        if frame[:1] != b"\x00":
            break
        out.write(frame[1:])
        digest.update(frame[1:])
    trailer = json.loads(frame)
    assert trailer["sha256"] == digest.hexdigest(), "checksum mismatch"
    return header["size"]


def upload(sock, name, data):
    start = request(sock, {"op": "put", "path": name, "size": len(data)})
    for i in range(start["offset"], len(data), 65535):
        send(sock, b"\x00" + data[i : i + 65535])
    send(sock, json.dumps({"sha256": hashlib.sha256(data).hexdigest()}).encode())
    return json.loads(recv_frame(sock))
