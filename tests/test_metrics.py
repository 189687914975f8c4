"""
Tests for L{tcplab.metrics} and the C{--metrics} endpoint of
L{tcplab.metricshttp}: exact values, and an endpoint that serves only
C{GET /metrics} and can never take the service down.
"""

from __future__ import annotations

import pytest_twisted
from twisted.internet.testing import MemoryReactorClock

from tcplab.echo import EchoFactory
from tcplab.metrics import Metrics, formatValue
from tcplab.metricshttp import LINGER, MAX_REQUEST_BYTES, REQUEST_TIMEOUT, MetricsHTTPFactory
from tcplab.settings import ServiceSettings
from tcplab.tap.common import makeListeningService
from tests.memory import MemoryConnection, connectInMemory
from tests.support import Collector, Loopback, reactor


def test_counters_are_exact_integers() -> None:
    """A large counter is printed digit for digit, never in exponent form."""
    metrics = Metrics("t")
    metrics.describe("tcplab_bytes_received_total", "counter", "Bytes.")
    metrics.increment("tcplab_bytes_received_total", 426_363_123_456)
    metrics.increment("tcplab_bytes_received_total", 1)
    assert 'tcplab_bytes_received_total{service="t"} 426363123457\n' in metrics.render().decode()


def test_value_formats() -> None:
    """Integral floats print as integers, others exactly, infinities and NaN as Prometheus does."""
    assert formatValue(3.0) == "3"
    assert formatValue(10**20) == "100000000000000000000"
    assert formatValue(0.25) == "0.25"
    assert formatValue(1 / 3) == "0.3333333333333333"
    assert formatValue(float("inf")) == "+Inf"
    assert formatValue(float("-inf")) == "-Inf"
    assert formatValue(float("nan")) == "NaN"


def scraper(metrics: Metrics | None = None) -> tuple[MetricsHTTPFactory, MemoryReactorClock]:
    """A metrics endpoint factory on a memory clock."""
    clock = MemoryReactorClock()
    if metrics is None:
        metrics = Metrics("t")
        metrics.increment("tcplab_things_total", 7)
    return MetricsHTTPFactory(metrics, reactor=clock), clock


def request(factory: MetricsHTTPFactory, data: bytes) -> MemoryConnection:
    """Connect in memory and send C{data}."""
    connection = connectInMemory(factory, clock=factory.reactor)
    connection.clientSends(data)
    return connection


def test_get_metrics_is_served_and_closed() -> None:
    """GET /metrics answers 200 with the registry in the text format, then closes."""
    factory, _ = scraper()
    connection = request(factory, b"GET /metrics?x=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    reply = connection.received()
    assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n" in reply
    assert reply.endswith(b'\ntcplab_things_total{service="t"} 7\n')
    assert connection.client.closed.called
    assert factory.open == 0


def test_post_is_refused_without_reading_the_body() -> None:
    """
    A POST with a huge Content-Length gets 405 from its request line alone;
    the server stops reading, and cuts the connection after a short linger.
    """
    factory, _ = scraper()
    connection = request(
        factory, b"POST /metrics HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 65536
    )
    assert connection.received().startswith(b"HTTP/1.1 405 Method Not Allowed\r\n")
    assert b"Allow: GET\r\n" in connection.received()
    assert connection.serverTransport.paused, "the body is never read"
    assert connection.server.received == b"", "nothing of the request is kept"
    connection.advance(LINGER)
    assert connection.client.closed.called
    assert factory.open == 0


def test_other_paths_are_not_found() -> None:
    """Only /metrics exists: / and anything else are 404."""
    factory, _ = scraper()
    for path in (b"/", b"/metrics/x", b"/favicon.ico"):
        connection = request(factory, b"GET " + path + b" HTTP/1.1\r\n\r\n")
        assert connection.received().startswith(b"HTTP/1.1 404 Not Found\r\n"), path


def test_slow_request_times_out() -> None:
    """A request trickled a byte at a time is cut REQUEST_TIMEOUT seconds after connecting."""
    factory, _ = scraper()
    connection = request(factory, b"GET /metrics HTTP/1.1\r\n")
    for _ in range(int(REQUEST_TIMEOUT) - 1):
        connection.clientSends(b"X")
        connection.advance(1)
    assert not connection.client.closed.called
    connection.advance(1)
    assert connection.received().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert connection.client.closed.called


def test_oversized_headers_are_refused() -> None:
    """Headers beyond MAX_REQUEST_BYTES are refused rather than buffered."""
    factory, _ = scraper()
    connection = request(factory, b"GET /metrics HTTP/1.1\r\n")
    connection.clientSends(b"X-Filler: " + b"y" * MAX_REQUEST_BYTES)
    assert connection.received().startswith(b"HTTP/1.1 431 ")


def test_connection_limit_refuses_with_503_and_frees_slots() -> None:
    """Beyond the limit scrapers get 503; a slot frees when one leaves."""
    factory, _ = scraper()
    factory.maxConnections = 3
    held = [request(factory, b"GET /metr") for _ in range(3)]
    refused = request(factory, b"")
    assert refused.received().startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    held[0].clientTransport.loseConnection()
    held[0].flush()
    served = request(factory, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert served.received().startswith(b"HTTP/1.1 200 OK\r\n")


@pytest_twisted.ensureDeferred
async def test_metrics_endpoint_cannot_starve_the_service(loopback: Loopback) -> None:
    """
    Over real sockets: scrapers trickling requests fill the metrics
    endpoint's own limit, newcomers there get 503, a POST with a huge
    Content-Length is answered 405 without its body being sent, and the
    echo service keeps accepting and serving its clients throughout.
    """
    settings = ServiceSettings(
        "tcplab-echo", listen=("tcp:0:interface=127.0.0.1",), metrics="tcp:0:interface=127.0.0.1"
    )
    service = makeListeningService(settings, EchoFactory(), reactor=reactor())
    service.privilegedStartService()
    service.startService()
    try:
        [port] = await service.listening
        assert service.metricsEndpoint is not None and service.metricsEndpoint.port is not None
        echoPort = port.getHost().port  # type: ignore[attr-defined]
        metricsPort = service.metricsEndpoint.port.getHost().port  # type: ignore[attr-defined]
        trickling: list[Collector] = []
        for _ in range(16):
            client: Collector = await loopback.connect(metricsPort)
            client.transport.write(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            trickling.append(client)
        for _ in range(3):
            late: Collector = await loopback.connect(metricsPort)
            await late.closed.addTimeout(10, reactor())
            assert bytes(late.received).startswith(b"HTTP/1.1 503 ")
        echo: Collector = await loopback.connect(echoPort)
        echo.transport.write(b"still here")
        assert await echo.waitFor(10) == b"still here"
        trickling[0].transport.loseConnection()
        await trickling[0].closed
        poster: Collector = await loopback.connect(metricsPort)
        poster.transport.write(b"POST /metrics HTTP/1.1\r\nContent-Length: 1000000000\r\n\r\n")
        poster.transport.write(b"x" * 1_000_000)
        await poster.waitForText(b"405 Method Not Allowed")
        await poster.closed.addTimeout(10, reactor())
        assert all(not c.closed.called for c in trickling[1:]), "slow scrapers only time out"
    finally:
        await service.stopService()
