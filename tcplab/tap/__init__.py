"""
The twistd side of tcplab: an C{Options} class and a C{makeService} per
service, plus the plumbing they share (L{tcplab.tap.common}).

These modules are imported only when their service is started; the plugin
file in C{twisted/plugins} names them without importing them.
"""
