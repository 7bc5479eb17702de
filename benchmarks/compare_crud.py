"""Measure readseq against a plain CRUD baseline on the same PostgreSQL.

Starts both services on free loopback ports, each in a fresh schema, seeds
the same users, and drives both with the same load generator, one scenario
at a time (readseq first, then the baseline):

- mark-read: `PUT .../has-read-seq` at concurrency 16 and 64; every request
  moves a read position forward, and each client owns its own users, so
  no request is a no-op;
- unread read: `GET /v1/users/{u}/unread` at concurrency 1 and 16.

The scenarios run in several rounds that alternate the two servers, and each
figure is the median over the rounds. Then it stops readseq, times a rebuild
of its projections (catch-up events/s) and reports the peak RSS of both
server processes. Every scenario is bounded by a request count and a time
limit, so a run takes a few minutes.

    python benchmarks/compare_crud.py \
        --postgres-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import httpx2 as httpx
import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.load import LoadResult, request_bytes, run_load  # noqa: E402

READSEQ = str(Path(sys.executable).with_name("readseq"))
UVICORN = str(Path(sys.executable).with_name("uvicorn"))
CONVERSATION = "sg_bench"
# One message at this seq leaves room for a billion read-position moves.
LATEST_SEQ = 10**9


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return int(match.group(1)) / 1024 if match else float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"server on port {port} exited with {process.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/users/probe/unread", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    sys.exit(f"server on port {port} did not start within 60 s")


@contextmanager
def schema(base_url: str, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name))
            )


def start(name: str, command: list[str], env: dict[str, str], log: Path) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)],
        env=os.environ | env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_until_up(port, process)
    return Server(name, port, process, log)


def seed_readseq(port: int, users: list[str]) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        for user in users:
            response = client.post(
                f"/v1/users/{user}/conversations/{CONVERSATION}/messages",
                json={
                    "messages": [
                        {
                            "seq": LATEST_SEQ,
                            "sender_id": "peer",
                            "sent_at": "2026-01-01T00:00:00Z",
                        }
                    ]
                },
            )
            response.raise_for_status()


def seed_baseline(base_url: str, schema_name: str, users: list[str]) -> None:
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("SET search_path TO {}").format(sql.Identifier(schema_name))
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO conversations VALUES (%s, %s, %s, 0, 1)",
                [(user, CONVERSATION, LATEST_SEQ) for user in users],
            )


def mark_read_requests(
    users: list[str], concurrency: int, positions: dict[str, int]
) -> Callable[[int, int], bytes]:
    """Each client cycles through its own users and moves each one forward.

    `positions` must persist for one server across scenarios and rounds, so
    that every request is an effective change and none is a stale no-op.
    """
    per_client = max(1, len(users) // concurrency)

    def make(client: int, number: int) -> bytes:
        user = users[(client + concurrency * (number % per_client)) % len(users)]
        positions[user] = positions.get(user, 0) + 1
        body = json.dumps({"has_read_seq": positions[user]}).encode()
        path = f"/v1/users/{user}/conversations/{CONVERSATION}/has-read-seq"
        return request_bytes("PUT", path, body)

    return make


def unread_requests(users: list[str]) -> Callable[[int, int], bytes]:
    def make(client: int, number: int) -> bytes:
        user = users[(client * 7919 + number * 104729) % len(users)]
        return request_bytes("GET", f"/v1/users/{quote(user)}/unread")

    return make


def rebuild_rate(database_url: str) -> dict[str, float]:
    completed = subprocess.run(
        [READSEQ, "--database-url", database_url, "projections", "rebuild"],
        capture_output=True,
        text=True,
        check=True,
    )
    rates = {}
    for match in re.finditer(
        r"(\w+): rebuilt ([\d,]+) events in ([\d.]+) s", completed.stderr
    ):
        events = int(match.group(2).replace(",", ""))
        rates[match.group(1)] = events / max(float(match.group(3)), 1e-9)
    return rates


def report(
    results: dict[str, dict[str, list[LoadResult]]],
    rss: dict[str, float],
    rates: dict[str, float],
    commits: str,
) -> dict[str, Any]:
    """Print the table of figures and ratios; return it for the JSON file."""
    print()
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}; "
        "client, servers and PostgreSQL on 127.0.0.1"
    )
    print(f"{'metric':<32} {'readseq':>12} {'baseline':>12} {'ratio':>7}")
    rows: list[tuple[str, float, float]] = []
    for name, by_server in results.items():
        ours, theirs = by_server["readseq"], by_server["baseline"]
        measures: list[tuple[str, Callable[[LoadResult], float]]] = [
            ("req/s", lambda r: r.rate),
            ("p50 ms", lambda r: r.percentile(0.5)),
            ("p99 ms", lambda r: r.percentile(0.99)),
        ]
        for label, measure in measures:
            rows.append(
                (
                    f"{name} {label}",
                    statistics.median(measure(r) for r in ours),
                    statistics.median(measure(r) for r in theirs),
                )
            )
    rows.append(("peak RSS MB", rss["readseq"], rss["baseline"]))
    for metric, ours_value, theirs_value in rows:
        ratio = ours_value / theirs_value if theirs_value else float("nan")
        print(f"{metric:<32} {ours_value:>12.2f} {theirs_value:>12.2f} {ratio:>7.2f}")
    for projection, rate in rates.items():
        print(f"{'catch-up ' + projection + ' events/s':<32} {rate:>12.0f}")
    print(commits)
    errors = {
        f"{name}/{server}": sum(r.errors for r in rounds)
        for name, by_server in results.items()
        for server, rounds in by_server.items()
        if any(r.errors for r in rounds)
    }
    if errors:
        print(f"requests with error status: {errors}")
    summary: dict[str, Any] = {
        "rows": rows,
        "catch_up": rates,
        "group_commit": commits,
        "errors": errors,
    }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="PostgreSQL URL without a schema",
    )
    parser.add_argument("--users", type=int, default=2048, help="users to seed")
    parser.add_argument(
        "--writes", type=int, default=30_000, help="mark-read requests per scenario"
    )
    parser.add_argument(
        "--reads", type=int, default=20_000, help="unread reads per scenario"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=45.0,
        help="time limit per scenario and server, over all rounds",
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    args = parser.parse_args()
    users = [f"user{index:05d}" for index in range(args.users)]
    results: dict[str, dict[str, list[LoadResult]]] = {}
    positions: dict[str, dict[str, int]] = {"readseq": {}, "baseline": {}}
    scenarios: list[
        tuple[str, Callable[[str], Callable[[int, int], bytes]], int, int]
    ] = [
        (
            "mark-read c16",
            lambda server: mark_read_requests(users, 16, positions[server]),
            16,
            args.writes,
        ),
        (
            "mark-read c64",
            lambda server: mark_read_requests(users, 64, positions[server]),
            64,
            args.writes,
        ),
        ("unread GET c1", lambda _: unread_requests(users), 1, args.reads // 4),
        ("unread GET c16", lambda _: unread_requests(users), 16, args.reads),
    ]

    with ExitStack() as stack, tempfile.TemporaryDirectory() as logs:
        readseq_schema = stack.enter_context(schema(args.postgres_url, "bench_readseq"))
        baseline_schema = stack.enter_context(schema(args.postgres_url, "bench_crud"))
        readseq_url = f"{args.postgres_url}?schema={readseq_schema}"
        baseline_url = f"{args.postgres_url}?options=-csearch_path%3D{baseline_schema}"
        readseq = start(
            "readseq",
            [READSEQ, "serve"],
            {"READSEQ_DATABASE_URL": readseq_url, "READSEQ_LOG_LEVEL": "WARNING"},
            Path(logs) / "readseq.log",
        )
        baseline = start(
            "baseline",
            [
                UVICORN,
                "--factory",
                "benchmarks.crud_baseline:create_app",
                "--log-level",
                "warning",
            ],
            {"BASELINE_DATABASE_URL": baseline_url},
            Path(logs) / "baseline.log",
        )
        servers = [readseq, baseline]
        try:
            seed_readseq(readseq.port, users)
            seed_baseline(args.postgres_url, baseline_schema, users)
            for server in servers:
                run_load(
                    "127.0.0.1",
                    server.port,
                    mark_read_requests(users, 16, positions[server.name]),
                    concurrency=16,
                    total=2000,
                    max_seconds=20,
                )
                run_load(
                    "127.0.0.1",
                    server.port,
                    unread_requests(users),
                    concurrency=4,
                    total=2000,
                    max_seconds=20,
                )
            # Rounds alternate the two servers, so that drift on a shared
            # machine affects both; each figure is the median of the rounds.
            for round_number in range(1, args.rounds + 1):
                for name, factory, concurrency, total in scenarios:
                    for server in servers:
                        result = run_load(
                            "127.0.0.1",
                            server.port,
                            factory(server.name),
                            concurrency=concurrency,
                            total=total // args.rounds,
                            max_seconds=args.max_seconds / args.rounds,
                        )
                        rounds = results.setdefault(name, {}).setdefault(
                            server.name, []
                        )
                        rounds.append(result)
                        print(
                            f"round {round_number} {name:<15} {server.name:<9} "
                            f"{result.rate:>8.0f} req/s "
                            f"p50 {result.percentile(0.5):6.2f} ms "
                            f"p99 {result.percentile(0.99):6.2f} ms "
                            f"errors {result.errors}",
                            file=sys.stderr,
                        )
            rss = {server.name: server.peak_rss_mb() for server in servers}
            health = httpx.get(f"http://127.0.0.1:{readseq.port}/health").json()
            commits = f"group commit: {health['group_commit']}"
        finally:
            for server in servers:
                server.stop()
        rates = rebuild_rate(readseq_url)

    summary = report(results, rss, rates, commits)
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / f"compare-{int(time.time())}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
