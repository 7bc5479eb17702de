"""The `readseq` command: serve, import, audit and manage projections."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import uvicorn
from pydantic import ValidationError

from api.app import create_app
from api.models import HistoryEntryPublic
from application.importing import (
    ImportedConversation,
    ImportStats,
    import_conversations,
)
from application.projections import ProjectionWorker
from cli.output import print_table, to_json
from domain.values import MAX_SEQ
from infrastructure.bootstrap import Service, build_service
from infrastructure.chitchat import chitchat_conversations, load_chitchat
from infrastructure.event_store import prepare_database
from infrastructure.irc import find_logs, read_logs
from infrastructure.settings import Settings

logger = logging.getLogger("readseq")

Command = Callable[[argparse.Namespace], int]

# Seconds uvicorn waits for open connections after a shutdown signal before it
# closes them; streams of worker processes end at the latest then.
SHUTDOWN_GRACE_SECONDS = 5


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; print errors with their causes and exit non-zero."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = _settings(args)
    except ValidationError as error:
        for item in error.errors():
            name = "READSEQ_" + "_".join(str(part) for part in item["loc"]).upper()
            print(
                f"readseq: invalid setting {name}={item['input']!r}: {item['msg']}",
                file=sys.stderr,
            )
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args.settings = settings
    command: Command = args.command
    try:
        return command(args)
    except KeyboardInterrupt:
        print("readseq: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        _print_error(error, sys.stderr)
        logger.debug("command failed", exc_info=error)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="readseq",
        description="Read state of chat conversations: unread counts and positions.",
    )
    parser.add_argument(
        "--database-url",
        help=(
            "event store URL, overriding READSEQ_DATABASE_URL: sqlite:///PATH or "
            "postgresql://USER:PASSWORD@HOST:PORT/DBNAME (default sqlite:///readseq.db)"
        ),
    )
    parser.add_argument(
        "--log-level", help="logging level, overriding READSEQ_LOG_LEVEL (default INFO)"
    )
    commands = parser.add_subparsers(metavar="COMMAND", required=True)

    serve = commands.add_parser("serve", help="serve the REST API")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default 8000)")
    serve.add_argument(
        "--workers",
        type=_positive_int,
        default=1,
        help="uvicorn worker processes (default 1)",
    )
    serve.add_argument(
        "--no-projections",
        action="store_true",
        help="do not run projections here; `readseq projections run` runs them",
    )
    serve.set_defaults(command=_serve)

    importing = commands.add_parser("import", help="import a chat data set")
    sources = importing.add_subparsers(metavar="SOURCE", required=True)
    chitchat = sources.add_parser(
        "chitchat", help="BYU Chit-Chat JSON (gzip or plain): one chat per conversation"
    )
    chitchat.add_argument("path", type=Path, help="path of dataset.json[.gz]")
    chitchat.add_argument(
        "--limit", type=_positive_int, help="import only the first N chats of the file"
    )
    chitchat.add_argument("--json", action="store_true", help="print JSON")
    chitchat.set_defaults(command=_import_chitchat)
    irc = sources.add_parser(
        "irc",
        help="IRC logs: one group conversation per file, members are the posters",
    )
    irc.add_argument(
        "paths",
        nargs="+",
        type=Path,
        help="log files, or folders searched for *.raw.txt and *.ascii.txt",
    )
    irc.add_argument("--json", action="store_true", help="print JSON")
    irc.set_defaults(command=_import_irc)

    projections = commands.add_parser("projections", help="manage read models")
    actions = projections.add_subparsers(metavar="ACTION", required=True)
    status = actions.add_parser("status", help="position and lag of each projection")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(command=_projections_status)
    rebuild = actions.add_parser("rebuild", help="clear read models and replay the log")
    rebuild.add_argument("names", nargs="*", help="projections (default: all)")
    rebuild.set_defaults(command=_projections_rebuild)
    run = actions.add_parser("run", help="follow the log until interrupted")
    run.add_argument("names", nargs="*", help="projections (default: all)")
    run.set_defaults(command=_projections_run)

    audit = commands.add_parser(
        "audit", help="replay one conversation's history, event by event"
    )
    audit.add_argument("user_id")
    audit.add_argument("conversation_id")
    audit.add_argument(
        "--version", type=_version, help="stop after this aggregate version"
    )
    audit.add_argument(
        "--at",
        type=datetime.fromisoformat,
        help="stop after events recorded at this ISO-8601 time (UTC if no zone)",
    )
    audit.add_argument("--json", action="store_true", help="print JSON")
    audit.set_defaults(command=_audit)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"invalid value {text!r}: expected a whole number of at least 1"
        raise argparse.ArgumentTypeError(msg)
    return value


def _version(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_SEQ:
        msg = f"invalid version {text}: expected at most {MAX_SEQ}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    if args.database_url is not None:
        overrides["database_url"] = args.database_url
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    for name in ("host", "port"):
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    if getattr(args, "no_projections", False):
        overrides["run_projections"] = False
    return Settings(**overrides)


# ---- serve -------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    # Fail with one clear line before uvicorn starts and logs tracebacks.
    prepare_database(settings.database)
    if args.workers > 1:
        # Worker processes build their own settings from the environment.
        os.environ["READSEQ_DATABASE_URL"] = settings.database_url
        os.environ["READSEQ_RUN_PROJECTIONS"] = str(settings.run_projections).lower()
        uvicorn.run(
            "api.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=args.workers,
            log_config=None,
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
        return 0

    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    _StreamClosingServer(config, app.state.stopping).run()
    return 0


class _StreamClosingServer(uvicorn.Server):
    """Ends open receipt streams as soon as a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, stopping: threading.Event) -> None:
        super().__init__(config)
        self.stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.stopping.set()
        super().handle_exit(sig, frame)


# ---- import ------------------------------------------------------------------


def _import_chitchat(args: argparse.Namespace) -> int:
    path: Path = args.path
    if not path.exists():
        msg = f"file not found: {path}; pass the path of the Chit-Chat dataset.json.gz"
        raise FileNotFoundError(msg)
    if not path.is_file():
        msg = f"{path} is not a regular file: pass the path of dataset.json.gz"
        raise ValueError(msg)

    started = time.monotonic()
    print(f"reading {path}", file=sys.stderr)
    data = load_chitchat(path)
    total = min(len(data), args.limit) if args.limit else len(data)
    return _import(args, chitchat_conversations(data, args.limit), total, started)


def _import_irc(args: argparse.Namespace) -> int:
    started = time.monotonic()
    logs = find_logs(args.paths)
    if not logs:
        msg = "no IRC logs found: pass *.raw.txt or *.ascii.txt files or their folders"
        raise FileNotFoundError(msg)
    print(f"reading {len(logs)} IRC logs", file=sys.stderr)
    return _import(args, read_logs(logs), len(logs), started)


def _import(
    args: argparse.Namespace,
    conversations: Iterable[ImportedConversation],
    total: int,
    started: float,
) -> int:
    service = build_service(args.settings)
    try:
        stats = import_conversations(
            service.app, conversations, progress=_ImportProgress(total, sys.stderr)
        )
        _catch_up(service, sys.stderr)
        summary = service.unread_view.summary()
    finally:
        service.close()

    elapsed = time.monotonic() - started
    result = {
        "conversations": stats.conversations,
        "messages": stats.messages,
        "events": stats.events,
        "users": summary.owners,
        "total_unread": summary.total_unread,
        "elapsed_seconds": round(elapsed, 1),
    }
    if args.json:
        print(to_json(result))
    else:
        print_table(
            ["conversations", "messages", "events", "users", "total unread", "elapsed"],
            [
                [
                    f"{stats.conversations:,}",
                    f"{stats.messages:,}",
                    f"{stats.events:,}",
                    f"{summary.owners:,}",
                    f"{summary.total_unread:,}",
                    f"{elapsed:.1f} s",
                ]
            ],
        )
    return 0


class _ImportProgress:
    """Prints import progress to a stream at most every two seconds."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.last_print = 0.0

    def __call__(self, stats: ImportStats) -> None:
        now = time.monotonic()
        if now - self.last_print < 2.0 and stats.conversations < self.total:
            return
        self.last_print = now
        rate = stats.events / stats.elapsed_seconds if stats.elapsed_seconds else 0.0
        print(
            f"imported {stats.conversations:,}/{self.total:,} conversations, "
            f"{stats.messages:,} messages, {stats.events:,} events "
            f"({rate:,.0f} events/s)",
            file=self.stream,
        )


def _catch_up(service: Service, stream: TextIO) -> None:
    for name in service.read_models.projections:
        worker = service.read_models.worker(
            name, batch_size=service.settings.projection_batch_size
        )
        _run_with_progress(worker, worker.catch_up, stream, "projected")


def _run_with_progress(
    worker: ProjectionWorker,
    run: Callable[[Callable[[int, int], None]], int],
    stream: TextIO,
    verb: str,
) -> None:
    head = worker.app.head_position()
    started = time.monotonic()
    last_print = 0.0

    def progress(position: int, processed: int) -> None:
        nonlocal last_print
        now = time.monotonic()
        if now - last_print < 2.0 and position < head:
            return
        last_print = now
        rate = processed / (now - started) if now > started else 0.0
        print(
            f"{worker.name}: {verb} {processed:,} events, position "
            f"{position:,}/{head:,} ({rate:,.0f} events/s)",
            file=stream,
        )

    processed = run(progress)
    print(
        f"{worker.name}: {verb} {processed:,} events in "
        f"{time.monotonic() - started:.1f} s, at position {worker.position:,}",
        file=stream,
    )


# ---- projections -------------------------------------------------------------


def _projections_status(args: argparse.Namespace) -> int:
    service = build_service(args.settings)
    try:
        statuses = service.read_models.status()
    finally:
        service.close()
    if args.json:
        print(to_json([asdict(s) | {"lag": s.lag} for s in statuses]))
    else:
        print_table(
            ["projection", "position", "head", "lag"],
            [
                [s.name, f"{s.position:,}", f"{s.head:,}", f"{s.lag:,}"]
                for s in statuses
            ],
        )
    return 0


def _projections_rebuild(args: argparse.Namespace) -> int:
    service = build_service(args.settings)
    try:
        names = args.names or list(service.read_models.projections)
        for name in names:
            worker = service.read_models.worker(
                name, batch_size=service.settings.projection_batch_size
            )
            _run_with_progress(worker, worker.rebuild, sys.stderr, "rebuilt")
    finally:
        service.close()
    return 0


def _projections_run(args: argparse.Namespace) -> int:
    service = build_service(args.settings)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        names = args.names or list(service.read_models.projections)
        for name in names:
            service.read_models.get(name)
        service.read_models.projections = {
            name: service.read_models.projections[name] for name in names
        }
        service.start_projections()
        logger.info("running projections %s until interrupted", ", ".join(names))
        stop.wait()
    finally:
        service.close()
    return 0


# ---- audit -------------------------------------------------------------------


def _audit(args: argparse.Namespace) -> int:
    at: datetime | None = args.at
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    service = build_service(args.settings)
    try:
        entries = service.app.history(
            args.user_id,
            args.conversation_id,
            until_version=args.version,
            until_time=at,
        )
    finally:
        service.close()
    if args.json:
        # The same field names as the HTTP history.
        public = [HistoryEntryPublic.of(entry) for entry in entries]
        print(to_json([entry.model_dump(mode="json") for entry in public]))
        return 0
    print_table(
        ["version", "recorded at", "event", "has_read_seq", "unread", "change"],
        [
            [
                str(entry.version),
                entry.recorded_at.isoformat(timespec="milliseconds"),
                entry.event_type,
                str(entry.state.has_read_seq),
                str(entry.state.unread_count),
                _describe(entry.event_type, entry.event),
            ]
            for entry in entries
        ],
    )
    return 0


def _describe(event_type: str, event: dict[str, Any]) -> str:
    if event_type == "Started":
        peer = f" with {event['peer_user_id']}" if event.get("peer_user_id") else ""
        return f"{event['kind']}{peer}"
    if event_type == "MessagesPulled":
        seqs = [m["seq"] for m in event["messages"]]
        first, last = seqs[0], seqs[-1]
        span = f"seq {first}" if first == last else f"seqs {first}..{last}"
        return f"{len(seqs)} received ({span}), max_seq {event['max_seq']}"
    if event_type == "MessagesMarkedRead":
        ranges = ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in event["seqs"])
        return f"read {ranges}"
    if event_type == "HasReadSeqSet":
        return (
            f"{event['previous_has_read_seq']} -> {event['has_read_seq']} "
            f"({event['cause']})"
        )
    return json.dumps(event, default=str)[:80]


def _print_error(error: BaseException, stream: TextIO) -> None:
    print(f"readseq: error: {error}", file=stream)
    cause = error.__cause__ or error.__context__
    while cause is not None:
        print(f"  caused by: {type(cause).__name__}: {cause}", file=stream)
        cause = cause.__cause__ or cause.__context__


if __name__ == "__main__":
    sys.exit(main())
