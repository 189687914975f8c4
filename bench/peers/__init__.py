"""Peer servers the benchmarks compare tcplab with (standard library only)."""
