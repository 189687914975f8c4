"""Peer: the tutorials' echo server, one blocking thread per client."""

from __future__ import annotations

import argparse
import socket
import threading


def serve(conn: socket.socket) -> None:
    """Echo one client until it closes."""
    with conn:
        while True:
            data = conn.recv(1024)
            if not data:
                return
            conn.sendall(data)


def main(port: int) -> None:
    """Accept forever, a thread per client."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1024)
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    main(parser.parse_args().port)
