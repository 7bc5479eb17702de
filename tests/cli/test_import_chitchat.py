"""`readseq import chitchat` on a slice of the real data set, against an oracle.

The oracle reads the raw JSON and shares no code with the import: for each
chat and participant, the unread count is the number of the other sender's
messages after that participant's last message.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from infrastructure.bootstrap import build_service
from infrastructure.settings import Settings

SLICE = 300


def oracle(path: Path, limit: int) -> dict[tuple[str, str], int]:
    with gzip.open(path, "rt", encoding="utf-8") as file:
        chats: dict[str, Any] = json.load(file)
    expected: dict[tuple[str, str], int] = {}
    for chat_id, chat in list(chats.items())[:limit]:
        senders = [u["sender"] for turn in chat["messages"] for u in turn]
        for user in set(senders):
            last = max(i for i, sender in enumerate(senders) if sender == user)
            expected[(user, chat_id)] = sum(
                1 for sender in senders[last + 1 :] if sender != user
            )
    return expected


def run_import(
    database_url: str, path: Path, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    exit_code = main(
        [
            "--database-url",
            database_url,
            "import",
            "chitchat",
            str(path),
            "--limit",
            str(SLICE),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    summary: dict[str, Any] = json.loads(captured.out)
    return summary


def test_import_matches_oracle(
    database_url: str, chitchat_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = oracle(chitchat_path, SLICE)

    summary = run_import(database_url, chitchat_path, capsys)

    service = build_service(Settings(database_url=database_url))
    try:
        projected: dict[tuple[str, str], int] = {}
        loaded: dict[tuple[str, str], int] = {}
        for user in {user for user, _ in expected}:
            _, rows, _ = service.unread_view.snapshot(
                user, after=None, limit=10_000, include_read=True
            )
            for row in rows:
                chat_id = row.conversation_id.removeprefix("chitchat-")
                projected[(user, chat_id)] = row.unread_count
        for user, chat_id in expected:
            state = service.app.get_conversation(user, f"chitchat-{chat_id}")
            loaded[(user, chat_id)] = state.unread_count
    finally:
        service.close()

    assert summary["conversations"] == SLICE
    assert summary["total_unread"] == sum(expected.values())
    assert projected == expected
    assert loaded == expected


def test_reimport_records_nothing(
    database_url: str, chitchat_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = run_import(database_url, chitchat_path, capsys)

    second = run_import(database_url, chitchat_path, capsys)

    assert first["events"] > 0
    assert second["events"] == 0
    assert second["total_unread"] == first["total_unread"]


def test_missing_file_reports_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.json.gz"

    exit_code = main(
        [
            "--database-url",
            f"sqlite:///{tmp_path}/x.db",
            "import",
            "chitchat",
            str(missing),
        ]
    )

    assert exit_code == 1
    assert str(missing) in capsys.readouterr().err


def test_wrong_format_reports_chat(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"chat-1": {"messages": [[{"text": "hi"}]]}}))

    exit_code = main(
        [
            "--database-url",
            f"sqlite:///{tmp_path}/x.db",
            "import",
            "chitchat",
            str(broken),
        ]
    )

    assert exit_code == 1
    error = capsys.readouterr().err
    assert "chat-1" in error
    assert "sender" in error
