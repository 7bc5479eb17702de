"""Reader of IRC channel logs, one group conversation per log file.

Two line formats are read, as in the IRC conversation-disentanglement corpus:
`[HH:MM] <nick> text` (Ubuntu logs, whose file name `YYYY-MM-DD_HH.raw.txt`
gives the date) and `channel YYYY-MM-DD [HH:MM:SS] <nick> text`, where the
seconds may be missing. Every other
line (joins, parts, nick changes, actions) is a system line and is skipped.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from application.importing import ImportedConversation
from domain.errors import DomainError
from domain.values import (
    USER_ID_PATTERN,
    ConversationKind,
    ReceivedMessage,
    check_conversation_id,
)

logger = logging.getLogger(__name__)

LOG_SUFFIXES = (".raw.txt", ".ascii.txt")
CONVERSATION_ID_PREFIX = "sg_irc."

_UBUNTU_LINE = re.compile(r"\[(\d{2}):(\d{2})\] <([^>\s]+)>")
_DATED_LINE = re.compile(
    r"\S+ (\d{4}-\d{2}-\d{2}) \[(\d{2}):(\d{2})(?::(\d{2}))?\] <([^>\s]+)>"
)
_FILE_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})")
_ALLOWED_IN_USER_ID = re.compile(r"[A-Za-z0-9.\-@]")


class LogFormatError(ValueError):
    """A file is not an IRC log in a known format."""


def find_logs(paths: Iterable[Path]) -> list[Path]:
    """Expand folders into the log files below them, sorted; keep files as given."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.name.endswith(LOG_SUFFIXES) and p.is_file()
                )
            )
        elif path.is_file():
            found.append(path)
        else:
            msg = f"file not found: {path}; pass IRC log files or folders of them"
            raise FileNotFoundError(msg)
    return found


def nick_to_user_id(nick: str) -> str:
    """Map an IRC nick to a user ID, escaping other characters as `:` and hex.

    User IDs allow letters, digits and `.-@:`, so `|trey|` becomes
    `:7ctrey:7c`; `:` itself is escaped too, which keeps the mapping reversible.
    """
    escaped = "".join(
        char if _ALLOWED_IN_USER_ID.fullmatch(char) else _escape(char) for char in nick
    )
    if not USER_ID_PATTERN.fullmatch(escaped) or escaped in (".", ".."):
        msg = f"IRC nick {nick!r} does not fit a user ID even when escaped"
        raise LogFormatError(msg)
    return escaped


def _escape(char: str) -> str:
    return "".join(f":{byte:02x}" for byte in char.encode("utf-8"))


def conversation_id_for(path: Path) -> str:
    """Name the conversation after the log's folder and file name.

    Only `.txt` is dropped, so `x.raw.txt` and `x.ascii.txt` stay apart.
    """
    stem = path.name.removesuffix(".txt")
    conversation_id = f"{CONVERSATION_ID_PREFIX}{path.parent.name}.{stem}"
    try:
        return check_conversation_id(conversation_id)
    except DomainError as error:
        msg = f"cannot name a conversation after {path}: {error}"
        raise LogFormatError(msg) from error


def read_log(path: Path) -> ImportedConversation:
    """Read one log as a group whose members are the nicks that post in it.

    Seqs follow the order of user messages. Every member sees the whole log,
    and a member who posts has read everything before the post. A message
    line with an impossible date or time, or a nick that cannot become a
    user ID, is skipped with a warning naming the file and line.
    """
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        msg = f"cannot read IRC log {path}: {error}"
        raise LogFormatError(msg) from error
    day = _file_date(path)
    messages: list[ReceivedMessage] = []
    members: list[str] = []
    previous: datetime | None = None
    for number, line in enumerate(lines, start=1):
        try:
            parsed = _parse(line, day)
            if parsed is None:
                continue
            sent_at, nick = parsed
            user_id = nick_to_user_id(nick)
        except (ValueError, LogFormatError) as error:
            logger.warning("skipped line %d of %s: %s", number, path, error)
            continue
        if previous is not None and sent_at < previous - timedelta(hours=12):
            # Minute-only Ubuntu lines wrap around at midnight.
            day += timedelta(days=1)
            sent_at += timedelta(days=1)
        previous = sent_at
        if user_id not in members:
            members.append(user_id)
        messages.append(ReceivedMessage(len(messages) + 1, user_id, sent_at))
    return ImportedConversation(
        conversation_id=conversation_id_for(path),
        kind=ConversationKind.GROUP,
        members=members,
        deliveries=[[message] for message in messages],
        pull_on_post=True,
        source=str(path),
    )


def _file_date(path: Path) -> date:
    # Ubuntu logs have no date on their lines; the file name carries it.
    found = _FILE_DATE.search(path.name)
    if found is None:
        return date(1970, 1, 1)
    try:
        return date.fromisoformat(found.group(1))
    except ValueError:
        logger.warning("file name %s has an invalid date; using 1970-01-01", path)
        return date(1970, 1, 1)


def read_logs(paths: Iterable[Path]) -> Iterator[ImportedConversation]:
    """Read each log file in turn, skipping logs without user messages."""
    for path in paths:
        log = read_log(path)
        if log.message_count == 0:
            logger.warning("no user messages in %s; skipped", path)
            continue
        yield log


def _parse(line: str, day: date) -> tuple[datetime, str] | None:
    dated = _DATED_LINE.match(line)
    if dated:
        on, hour, minute, second, nick = dated.groups()
        sent_at = datetime.fromisoformat(f"{on}T{hour}:{minute}:{second or '00'}+00:00")
        return sent_at, nick
    ubuntu = _UBUNTU_LINE.match(line)
    if ubuntu:
        hour, minute, nick = ubuntu.groups()
        if int(hour) > 23 or int(minute) > 59:
            msg = f"invalid time [{hour}:{minute}]"
            raise ValueError(msg)
        sent_at = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
            hours=int(hour), minutes=int(minute)
        )
        return sent_at, nick
    return None
