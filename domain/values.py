"""Value types of the read-state domain: IDs, seqs, kinds and received messages."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.errors import (
    InvalidConversationIdError,
    InvalidSeqError,
    InvalidUserIdError,
    NotAMemberError,
)

MIN_SEQ = 1
MAX_SEQ = 2**63 - 1

USER_ID_PATTERN = re.compile(r"[A-Za-z0-9.\-@:]{1,64}")
# Printable ASCII (0x21-0x7E) without '/', '?' and '#', so the ID fits a URL path.
CONVERSATION_ID_PATTERN = re.compile(r"[\x21-\x22\x24-\x2E\x30-\x3E\x40-\x7E]{1,128}")


class ConversationKind(StrEnum):
    """Kind of conversation, which decides who receives read receipts."""

    SINGLE = "single"
    GROUP = "group"
    NOTIFICATION = "notification"


class ReadCause(StrEnum):
    """Reason the read position moved forward."""

    SET = "set"
    MARK_CONVERSATION_READ = "mark_conversation_read"
    OWN_MESSAGE = "own_message"


KIND_PREFIXES = {
    "si_": ConversationKind.SINGLE,
    "sg_": ConversationKind.GROUP,
    "sn_": ConversationKind.NOTIFICATION,
}


# URL clients resolve these path segments away, so they cannot name a resource.
DOT_SEGMENTS = (".", "..")


def check_user_id(user_id: str) -> str:
    """Return the user ID unchanged, or raise `InvalidUserIdError`."""
    if not USER_ID_PATTERN.fullmatch(user_id) or user_id in DOT_SEGMENTS:
        raise InvalidUserIdError(user_id)
    return user_id


def check_conversation_id(conversation_id: str) -> str:
    """Return the conversation ID unchanged, or raise `InvalidConversationIdError`."""
    if (
        not CONVERSATION_ID_PATTERN.fullmatch(conversation_id)
        or conversation_id in DOT_SEGMENTS
    ):
        raise InvalidConversationIdError(conversation_id)
    return conversation_id


def check_seq(seq: int) -> int:
    """Return the seq unchanged, or raise `InvalidSeqError` outside 1 to 2**63 - 1."""
    if not MIN_SEQ <= seq <= MAX_SEQ:
        raise InvalidSeqError(seq)
    return seq


def kind_from_prefix(conversation_id: str) -> ConversationKind | None:
    """Return the kind that the OpenIM ID prefix names, or None without a prefix."""
    return KIND_PREFIXES.get(conversation_id[:3])


def members_of_pair_id(conversation_id: str) -> tuple[str, str]:
    """Return the two members named by an `si_<a>_<b>` or `sn_<a>_<b>` ID.

    User IDs cannot contain '_', so the split is unambiguous. The OpenIM
    convention sorts the two IDs, so `si_bob_alice` is rejected in favour
    of `si_alice_bob`: one chat must not have two IDs.
    """
    prefix, members = conversation_id[:3], conversation_id[3:].split("_")
    if len(members) != 2 or not all(
        USER_ID_PATTERN.fullmatch(m) and m not in DOT_SEGMENTS for m in members
    ):
        raise InvalidConversationIdError(
            conversation_id, f"an ID starting with {prefix!r} must name two user IDs"
        )
    first, second = members
    if first > second:
        raise InvalidConversationIdError(
            conversation_id,
            f"the two user IDs must be sorted, as in {prefix}{second}_{first}",
        )
    return first, second


def peer_from_pair_id(owner_id: str, conversation_id: str) -> str:
    """Return the member of an `si_`/`sn_` ID other than the owner."""
    first, second = members_of_pair_id(conversation_id)
    if owner_id == first:
        return second
    if owner_id == second:
        return first
    raise NotAMemberError(owner_id, conversation_id, (first, second))


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A message delivered to a conversation's owner."""

    seq: int
    sender_id: str
    sent_at: datetime
    client_msg_id: str | None = None
    counts_as_unread: bool = True

    def __post_init__(self) -> None:
        check_seq(self.seq)
        check_user_id(self.sender_id)

    def to_event_dict(self) -> dict[str, object]:
        """Convert to the JSON-ready dictionary stored in `MessagesPulled`."""
        return {
            "seq": self.seq,
            "sender_id": self.sender_id,
            "client_msg_id": self.client_msg_id,
            "sent_at": self.sent_at.isoformat(),
            "counts_as_unread": self.counts_as_unread,
        }

    @classmethod
    def from_event_dict(cls, data: dict[str, object]) -> ReceivedMessage:
        """Rebuild a message from its `MessagesPulled` dictionary."""
        return cls(
            seq=int(data["seq"]),  # type: ignore[call-overload]
            sender_id=str(data["sender_id"]),
            client_msg_id=(
                None if data["client_msg_id"] is None else str(data["client_msg_id"])
            ),
            sent_at=datetime.fromisoformat(str(data["sent_at"])),
            counts_as_unread=bool(data["counts_as_unread"]),
        )


def to_ranges(seqs: Iterable[int]) -> list[list[int]]:
    """Compress seqs into sorted, inclusive `[first, last]` ranges."""
    ranges: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if ranges and ranges[-1][1] == seq - 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return ranges


def iter_ranges(ranges: Iterable[Iterable[int]]) -> Iterator[int]:
    """Expand inclusive `[first, last]` ranges into their seqs."""
    for first, last in ranges:
        yield from range(first, last + 1)


def merge_ranges(ranges: list[list[int]], seqs: Iterable[int]) -> list[list[int]]:
    """Add seqs to sorted, disjoint inclusive ranges, joining adjacent ones."""
    merged: list[list[int]] = []
    for first, last in sorted([*ranges, *([seq, seq] for seq in seqs)]):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return merged
