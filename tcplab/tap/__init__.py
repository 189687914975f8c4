"""
The twistd side of tcplab: an C{Options} class and a C{makeService} per
service, plus the plumbing they share: the common options and the service
tree (L{tcplab.tap.common}), and the listening services that bind before
twistd drops privileges (L{tcplab.tap.listening}).

These modules are imported only when their service is started; the plugin
file in C{twisted/plugins} names them without importing them.
"""
