"""Results that application commands and queries return to the interfaces."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.conversation import Conversation
from domain.values import ConversationKind


@dataclass(frozen=True)
class ConversationState:
    """One user's read state in one conversation, as recorded in the event store."""

    owner_id: str
    conversation_id: str
    kind: ConversationKind
    peer_user_id: str | None
    min_seq: int
    max_seq: int
    has_read_seq: int
    unread_count: int
    read_seqs_above: list[int]
    version: int
    modified_on: datetime

    @classmethod
    def of(cls, conversation: Conversation) -> ConversationState:
        """Copy the state of a loaded aggregate."""
        return cls(
            owner_id=conversation.owner_id,
            conversation_id=conversation.conversation_id,
            kind=conversation.kind,
            peer_user_id=conversation.peer_user_id,
            min_seq=conversation.min_seq,
            max_seq=conversation.max_seq,
            has_read_seq=conversation.has_read_seq,
            unread_count=conversation.unread_count,
            read_seqs_above=conversation.read_seqs_above,
            version=conversation.version,
            modified_on=conversation.modified_on,
        )


@dataclass(frozen=True)
class CommandResult:
    """Effective state after a command and the log position to wait for.

    `position` is the notification ID of the last event the command recorded,
    or the log head when it recorded nothing (`changed` is then False).
    """

    state: ConversationState
    position: int
    changed: bool


@dataclass(frozen=True)
class PullResult(CommandResult):
    """Result of recording received messages for one owner."""

    new_seqs: list[int]
    known_seqs: list[int]


@dataclass(frozen=True)
class FanOutResult:
    """Result of recording one message for many recipients in one transaction."""

    recipients: list[PullResult]
    position: int


@dataclass(frozen=True)
class HistoryEntry:
    """One recorded event of a conversation and the state right after it."""

    version: int
    event_type: str
    recorded_at: datetime
    event: dict[str, object]
    state: ConversationState


@dataclass(frozen=True)
class UnreadConversation:
    """Unread-count read model row of one conversation."""

    conversation_id: str
    kind: str
    max_seq: int
    has_read_seq: int
    unread_count: int
    updated_at: datetime


@dataclass(frozen=True)
class UnreadTotals:
    """Unread-count read model totals of one user."""

    owner_id: str
    total_unread: int
    conversations_with_unread: int


@dataclass(frozen=True)
class ProjectionStatus:
    """Progress of one projection against the head of the event log."""

    name: str
    position: int
    head: int

    @property
    def lag(self) -> int:
        """Number of notification IDs between the projection and the log head."""
        return max(self.head - self.position, 0)
