"""``python -m tcplab``: the same as the ``tcplab`` command."""

from tcplab.cli import console

if __name__ == "__main__":
    console()
