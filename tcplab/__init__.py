"""
tcplab: the classic socket-tutorial programs as real Twisted services.

The services (echo, chat, file transfer) are importable protocols and
factories, twistd plugins (``twistd -n tcplab-echo``) and one ``tcplab``
client command.
"""

__version__ = "0.1.0"
