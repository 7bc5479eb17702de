"""`readseq import irc` on a real log file, against an oracle from the raw lines.

The oracle shares no code with the import: a message's read count is the
number of distinct nicks, other than its sender, that posted after it, and
those are exactly its readers.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import anyio
import pytest

from cli.main import main
from infrastructure.bootstrap import build_service
from infrastructure.irc import (
    conversation_id_for,
    nick_to_user_id,
    read_log,
    read_logs,
)
from infrastructure.settings import Settings

LOG = Path("irc-disentanglement") / "ubuntu-dev" / "2005-06-27_12.raw.txt"
MESSAGE_LINE = re.compile(r"^\[\d\d:\d\d\] <([^>\s]+)>")


def oracle(path: Path) -> list[tuple[str, set[str]]]:
    """Each message's sender nick and the set of nicks that read it."""
    nicks = [
        match.group(1)
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        if (match := MESSAGE_LINE.match(line))
    ]
    readers: list[tuple[str, set[str]]] = []
    for index, sender in enumerate(nicks):
        later = set(nicks[index + 1 :]) - {sender}
        readers.append((sender, later))
    return readers


@pytest.fixture
def irc_log(data_folder: Path) -> Path:
    path = data_folder / LOG
    if not path.is_file():
        pytest.fail(f"IRC log {path} not found in the data folder {data_folder}")
    return path


def test_read_counts_match_oracle(
    database_url: str, irc_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = oracle(irc_log)

    exit_code = main(
        ["--database-url", database_url, "import", "irc", str(irc_log), "--json"]
    )
    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    summary = json.loads(captured.out)

    conversation_id = conversation_id_for(irc_log)
    service = build_service(Settings(database_url=database_url))
    try:
        actual = []
        for seq in range(1, len(expected) + 1):
            page = anyio.run(
                partial(
                    service.receipts.readers,
                    conversation_id,
                    seq,
                    readers_after="",
                    not_read_after="",
                    limit=500,
                    min_position=0,
                    timeout=10,
                )
            )
            actual.append(
                (
                    page.message.sender_id,
                    page.message.read_count,
                    {reader.reader_id for reader in page.readers},
                    set(page.not_read_by),
                )
            )
    finally:
        service.close()

    members = {nick_to_user_id(sender) for sender, _ in expected}
    assert summary["messages"] == len(expected)
    assert summary["users"] == len(members)
    for seq, ((sender, readers), row) in enumerate(
        zip(expected, actual, strict=True), start=1
    ):
        user_ids = {nick_to_user_id(nick) for nick in readers}
        assert row[0] == nick_to_user_id(sender), f"seq {seq}"
        assert row[1] == len(readers), f"seq {seq}"
        assert row[2] == user_ids, f"seq {seq}"
        assert row[3] == members - user_ids - {row[0]}, f"seq {seq}"


@pytest.mark.parametrize(
    ("nick", "user_id"),
    [
        pytest.param("tweaked", "tweaked", id="plain"),
        pytest.param("|trey|", ":7ctrey:7c", id="pipes"),
        pytest.param("Matt|", "Matt:7c", id="trailing-pipe"),
        pytest.param("a:b", "a:3ab", id="colon-escaped"),
        pytest.param("[x]_y", ":5bx:5d:5fy", id="brackets-underscore"),
    ],
)
def test_nick_mapping(nick: str, user_id: str) -> None:
    assert nick_to_user_id(nick) == user_id


def test_log_line_formats(tmp_path: Path) -> None:
    log = tmp_path / "meeting.0.ascii.txt"
    log.write_text(
        "chan 2010-11-08 [13:21:05] <ann> first\n"
        "chan 2010-11-08 [13:22] <bo|> second, without seconds\n"
        "=== carl has joined #chan\n"
        "chan 2010-11-08 [13:23:00] <ann>\ttab after the nick\n",
        encoding="utf-8",
    )

    imported = read_log(log)

    assert imported.conversation_id == f"sg_irc.{tmp_path.name}.meeting.0.ascii"
    assert imported.members == ["ann", "bo:7c"]
    times = [d[0].sent_at.isoformat() for d in imported.deliveries]
    assert times == [
        "2010-11-08T13:21:05+00:00",
        "2010-11-08T13:22:00+00:00",
        "2010-11-08T13:23:00+00:00",
    ]
    assert [d[0].seq for d in imported.deliveries] == [1, 2, 3]


def test_log_without_messages_is_skipped(tmp_path: Path) -> None:
    empty = tmp_path / "quiet.raw.txt"
    empty.write_text("=== ann has joined #chan\n", encoding="utf-8")

    assert list(read_logs([empty])) == []


def test_bad_lines_are_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "2020-13-45_00.raw.txt"
    log.write_text(
        "[10:00] <ann> fine\n"
        "[99:99] <bo> impossible time\n"
        "[10:01] <.> a nick that cannot be a user ID\n"
        "[10:02] <bo> fine too\n",
        encoding="utf-8",
    )

    with caplog.at_level("WARNING", logger="infrastructure.irc"):
        imported = read_log(log)

    assert imported.members == ["ann", "bo"]
    assert imported.message_count == 2
    assert "line 2 of" in caplog.text
    assert "line 3 of" in caplog.text
    assert "invalid date" in caplog.text


def test_same_log_twice_in_one_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "chan.raw.txt"
    log.write_text("[10:00] <ann> hi\n[10:01] <bo> hello\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path}/twice.db"

    exit_code = main(
        ["--database-url", url, "import", "irc", str(log), str(log), "--json"]
    )

    captured = capsys.readouterr()
    assert exit_code == 0, captured.err
    summary = json.loads(captured.out)
    assert summary["conversations"] == 2
    assert summary["total_unread"] == 1
