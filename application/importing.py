"""Bulk import: replay recorded conversations through the domain rules."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from application.service import ReadStateApp
from domain.conversation import Conversation
from domain.values import ConversationKind, ReceivedMessage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportedConversation:
    """A conversation from a data set, as deliveries to all of its members.

    Each delivery is a list of messages that reaches every member at once.
    A member who sent a message has read everything up to it, which the
    domain derives from receiving one's own message.
    """

    conversation_id: str
    kind: ConversationKind
    members: list[str]
    deliveries: list[list[ReceivedMessage]]

    @property
    def message_count(self) -> int:
        """Number of messages in all deliveries."""
        return sum(len(delivery) for delivery in self.deliveries)


@dataclass
class ImportStats:
    """Counts of one import run."""

    conversations: int = 0
    messages: int = 0
    events: int = 0
    elapsed_seconds: float = 0.0


ImportProgress = Callable[[ImportStats], None]


def import_conversations(
    app: ReadStateApp,
    conversations: Iterable[ImportedConversation],
    *,
    events_per_transaction: int = 5000,
    progress: ImportProgress | None = None,
) -> ImportStats:
    """Record every delivery for every member, saving many aggregates per commit.

    Existing aggregates are loaded first, so importing the same data again
    records nothing new.
    """
    stats = ImportStats()
    started = time.monotonic()
    pending: list[Conversation] = []
    pending_events = 0

    for imported in conversations:
        views = [_load_or_start(app, imported, member) for member in imported.members]
        for delivery in imported.deliveries:
            for view in views:
                view.pull(delivery)
        pending.extend(views)
        pending_events += sum(len(view.pending_events) for view in views)
        stats.conversations += 1
        stats.messages += imported.message_count

        if pending_events >= events_per_transaction:
            stats.events += _save(app, pending)
            pending, pending_events = [], 0
            stats.elapsed_seconds = time.monotonic() - started
            if progress is not None:
                progress(stats)

    stats.events += _save(app, pending)
    stats.elapsed_seconds = time.monotonic() - started
    if progress is not None:
        progress(stats)
    logger.info(
        "imported %d conversations, %d messages, %d events in %.1f s",
        stats.conversations,
        stats.messages,
        stats.events,
        stats.elapsed_seconds,
    )
    return stats


def _load_or_start(
    app: ReadStateApp, imported: ImportedConversation, member: str
) -> Conversation:
    conversation = app.load(member, imported.conversation_id)
    if conversation is not None:
        return conversation
    peers = [m for m in imported.members if m != member]
    peer = peers[0] if imported.kind is ConversationKind.SINGLE and peers else None
    return Conversation.start(member, imported.conversation_id, imported.kind, peer)


def _save(app: ReadStateApp, conversations: Sequence[Conversation]) -> int:
    events = sum(len(c.pending_events) for c in conversations)
    if events:
        app.save_many(conversations)
    return events
