"""Peer: a stdlib asyncio broadcast chat (banner, then every line to everyone else)."""

from __future__ import annotations

import argparse
import asyncio


class Chat(asyncio.Protocol):
    """Relay each complete line as ``<userN> LINE`` to every other client."""

    clients: set[Chat] = set()
    count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        Chat.count += 1
        self.prefix = b"<user%d> " % Chat.count
        self.buffer = b""
        Chat.clients.add(self)
        self.transport.write(b"*** Welcome, user%d\r\n" % Chat.count)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            message = self.prefix + line.rstrip(b"\r") + b"\r\n"
            for client in Chat.clients:
                if client is not self:
                    client.transport.write(message)

    def connection_lost(self, exc: Exception | None) -> None:
        Chat.clients.discard(self)


async def main(port: int) -> None:
    """Serve until killed."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Chat, "127.0.0.1", port, backlog=1024)
    await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
