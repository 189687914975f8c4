"""
twistd plugins for tcplab: ``twistd -n tcplab-echo``, ``tcplab-chat`` and
``tcplab-files``.

Kept tiny on purpose: ``twistd --help`` imports every plugin file, so each
service's real module is only named here and imported when it runs.
"""

from twisted.application.service import ServiceMaker

tcplabEcho = ServiceMaker(
    "tcplab-echo",
    "tcplab.tap.echo",
    "tcplab echo server: RFC 862 echo and the tutorials' variants, TCP and UDP",
    "tcplab-echo",
)

tcplabChat = ServiceMaker(
    "tcplab-chat",
    "tcplab.tap.chat",
    "tcplab chat server: multi-user line chat for nc, telnet and 'tcplab chat'",
    "tcplab-chat",
)

tcplabFiles = ServiceMaker(
    "tcplab-files",
    "tcplab.tap.files",
    "tcplab file server: list/get/put/delete, resumable, SHA-256 verified, confined to --root",
    "tcplab-files",
)
