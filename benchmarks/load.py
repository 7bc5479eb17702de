"""A small HTTP/1.1 load generator on asyncio streams, one keep-alive connection
per concurrent client. It adds little client CPU per request, which matters
when the client, the server and PostgreSQL share two cores.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Builds the raw request for (client index, request number of that client).
RequestFactory = Callable[[int, int], bytes]


@dataclass
class LoadResult:
    """Outcome of one load run."""

    requests: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.elapsed if self.elapsed else 0.0

    def percentile(self, fraction: float) -> float:
        """Latency in milliseconds at a fraction (0.5 is the median)."""
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        if fraction == 0.5:
            return statistics.median(ordered)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def request_bytes(method: str, path: str, body: bytes = b"") -> bytes:
    """Encode one HTTP/1.1 request with a JSON body."""
    head = f"{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    if body:
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def _client(
    index: int,
    host: str,
    port: int,
    make: RequestFactory,
    per_client: int,
    deadline: float,
    result: LoadResult,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for number in range(per_client):
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            writer.write(make(index, number))
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            result.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.requests += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status >= 400:
                result.errors += 1
    finally:
        writer.close()


async def _run(
    host: str,
    port: int,
    make: RequestFactory,
    concurrency: int,
    total: int,
    max_seconds: float,
) -> LoadResult:
    result = LoadResult()
    per_client = max(1, total // concurrency)
    started = time.monotonic()
    deadline = started + max_seconds
    await asyncio.gather(
        *(
            _client(i, host, port, make, per_client, deadline, result)
            for i in range(concurrency)
        )
    )
    result.elapsed = time.monotonic() - started
    return result


def _run_one_client(
    host: str, port: int, make: RequestFactory, total: int, max_seconds: float
) -> LoadResult:
    # A blocking socket loop adds less to each latency than an event loop.
    result = LoadResult()
    started = time.monotonic()
    deadline = started + max_seconds
    with socket.create_connection((host, port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stream = sock.makefile("rb")
        for number in range(total):
            if time.monotonic() > deadline:
                break
            request_started = time.perf_counter()
            sock.sendall(make(0, number))
            status = int(stream.readline()[9:12])
            length = 0
            while (line := stream.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            stream.read(length)
            result.latencies_ms.append((time.perf_counter() - request_started) * 1000)
            result.requests += 1
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status >= 400:
                result.errors += 1
    result.elapsed = time.monotonic() - started
    return result


def run_load(
    host: str,
    port: int,
    make: RequestFactory,
    *,
    concurrency: int,
    total: int,
    max_seconds: float,
) -> LoadResult:
    """Send about `total` requests from `concurrency` clients, stopping early
    after `max_seconds`."""
    if concurrency == 1:
        return _run_one_client(host, port, make, total, max_seconds)
    return asyncio.run(_run(host, port, make, concurrency, total, max_seconds))
