"""Time `readseq import chitchat` on the full data set, on SQLite and PostgreSQL.

Each run imports into an empty store (a temporary SQLite file, or a fresh
PostgreSQL schema that is dropped afterwards) through the installed
`readseq` command, and prints the command's own summary with the wall time.

    python benchmarks/import_chitchat.py --backend sqlite
    python benchmarks/import_chitchat.py --backend both \
        --postgres-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
READSEQ = str(Path(sys.executable).with_name("readseq"))


def default_data_path() -> Path:
    folder = os.environ.get("READSEQ_DATA_DIR") or str(ROOT.parent / "shared" / "data")
    return Path(folder) / "chitchat-dataset" / "dataset.json.gz"


def run_import(database_url: str, data: Path, limit: int | None) -> dict[str, Any]:
    command = [READSEQ, "--database-url", database_url, "--log-level", "WARNING"]
    command += ["import", "chitchat", str(data), "--json"]
    if limit:
        command += ["--limit", str(limit)]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    if completed.returncode != 0:
        sys.exit(f"import failed ({completed.returncode}):\n{completed.stderr}")
    summary: dict[str, Any] = json.loads(completed.stdout)
    summary["wall_seconds"] = round(wall, 1)
    return summary


def sqlite_run(data: Path, limit: int | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        return run_import(f"sqlite:///{folder}/bench.db", data, limit)


def postgres_run(base_url: str, data: Path, limit: int | None) -> dict[str, Any]:
    schema = f"bench_{uuid4().hex[:12]}"
    try:
        return run_import(f"{base_url}?schema={schema}", data, limit)
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="sqlite"
    )
    parser.add_argument("--postgres-url", help="PostgreSQL URL without a schema")
    parser.add_argument("--data", type=Path, default=default_data_path())
    parser.add_argument("--limit", type=int, help="import only the first N chats")
    args = parser.parse_args()
    if args.backend != "sqlite" and not args.postgres_url:
        parser.error("--postgres-url is required for PostgreSQL runs")

    print(
        f"machine: {os.cpu_count()} CPUs, {platform.machine()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}"
    )
    print(f"data: {args.data}")
    results = []
    if args.backend in ("sqlite", "both"):
        results.append(("sqlite", sqlite_run(args.data, args.limit)))
    if args.backend in ("postgresql", "both"):
        results.append(
            ("postgresql", postgres_run(args.postgres_url, args.data, args.limit))
        )

    columns = ["conversations", "messages", "events", "users", "total_unread"]
    print(
        f"{'backend':<11} "
        + " ".join(f"{c:>13}" for c in columns)
        + "  wall s  events/s"
    )
    for backend, summary in results:
        rate = summary["events"] / summary["wall_seconds"]
        values = " ".join(f"{summary[c]:>13,}" for c in columns)
        print(f"{backend:<11} {values}  {summary['wall_seconds']:>6}  {rate:>8,.0f}")


if __name__ == "__main__":
    main()
