"""
Chat's flood control: the token bucket of L{tcplab.flood}, which lives
outside the chat package so the UDP echo service uses it without importing
chat.
"""

from tcplab.flood import TokenBucket

__all__ = ["TokenBucket"]
