"""
The ``HOST:PORT`` shorthand (``[::1]:8007`` for IPv6), recognised without
importing Twisted, so the client can tell before loading Twisted whether an
address could need TLS.
"""

from __future__ import annotations

import re

HOST_PORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")
"""``HOST:PORT`` or ``[IPV6]:PORT``; anything else is an endpoint description."""
