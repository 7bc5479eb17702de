"""Latency of receipt feed and group readers queries on the imported IRC logs.

Imports every IRC log into an empty store (a temporary SQLite file, or a new
PostgreSQL schema dropped afterwards), starts `readseq serve` on a free
loopback port and sends sequential requests over one keep-alive connection:
first pages of random users' feeds and readers of random group messages.

    python benchmarks/receipt_queries.py --backend sqlite
    python benchmarks/receipt_queries.py --backend postgresql \
        --postgres-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from uuid import uuid4

import httpx2 as httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from infrastructure.irc import find_logs, read_log  # noqa: E402

READSEQ = str(Path(sys.executable).with_name("readseq"))


def default_logs() -> Path:
    folder = os.environ.get("READSEQ_DATA_DIR") or str(ROOT.parent / "shared" / "data")
    return Path(folder) / "irc-disentanglement"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def database(backend: str, postgres_url: str | None) -> Iterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    assert postgres_url is not None
    schema = f"bench_{uuid4().hex[:12]}"
    try:
        yield f"{postgres_url}?schema={schema}"
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )


@contextmanager
def server(database_url: str) -> Iterator[str]:
    port = free_port()
    env = dict(
        os.environ, READSEQ_DATABASE_URL=database_url, READSEQ_LOG_LEVEL="WARNING"
    )
    process = subprocess.Popen(
        [READSEQ, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            sys.exit("server did not start within 60 s")
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(count: int, request: Callable[[], httpx.Response]) -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter()
        response = request()
        timings.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            sys.exit(f"request failed: {response.status_code} {response.text[:200]}")
    return timings


def report(name: str, timings: list[float]) -> None:
    timings.sort()
    p50 = statistics.median(timings)
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    print(f"{name:<28} {len(timings):>6} {p50:>9.2f} {p99:>9.2f} {timings[-1]:>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", help="PostgreSQL URL without a schema")
    parser.add_argument("--logs", type=Path, default=default_logs())
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    if args.backend == "postgresql" and not args.postgres_url:
        parser.error("--postgres-url is required for PostgreSQL")

    logs = [read_log(path) for path in find_logs([args.logs])]
    rng = random.Random(7)
    members = [(log.conversation_id, m) for log in logs for m in log.members]
    messages = [(log.conversation_id, log.message_count) for log in logs]

    with database(args.backend, args.postgres_url) as url:
        started = time.monotonic()
        subprocess.run(
            [
                READSEQ,
                "--database-url",
                url,
                "--log-level",
                "WARNING",
                "import",
                "irc",
                str(args.logs),
                "--json",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"import of {len(logs)} logs: {time.monotonic() - started:.1f} s")
        with server(url) as base_url, httpx.Client(base_url=base_url) as client:

            def feed() -> httpx.Response:
                _, user = rng.choice(members)
                return client.get(f"/v1/users/{user}/receipts", params={"limit": 100})

            def readers() -> httpx.Response:
                conversation, count = rng.choice(messages)
                seq = rng.randint(1, count)
                return client.get(
                    f"/v1/conversations/{conversation}/messages/{seq}/readers",
                    params={"limit": 100},
                )

            measure(100, feed)
            measure(100, readers)
            print(f"{'query (ms)':<28} {'count':>6} {'p50':>9} {'p99':>9} {'max':>9}")
            report("feed, first 100", measure(args.requests, feed))
            report("group readers, 100 per list", measure(args.requests, readers))


if __name__ == "__main__":
    main()
