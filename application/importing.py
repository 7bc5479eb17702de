"""Bulk import: replay recorded conversations through the domain rules."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from application.service import ReadStateApp
from domain.conversation import Conversation
from domain.errors import DomainError
from domain.values import ConversationKind, ReceivedMessage

logger = logging.getLogger(__name__)

# The most messages one imported pull records, as in one API request.
MAX_MESSAGES_PER_PULL = 1000


@dataclass(frozen=True)
class ImportedConversation:
    """A conversation from a data set, as deliveries to its members.

    By default each delivery reaches every member at once. With
    `pull_on_post`, a member pulls everything new only when posting, as a
    client that syncs before sending, and once more at the end; big groups
    then record one pull per post instead of one per member and line, with
    the same final state. Either way, a member who sent a message has read
    everything up to it, which the domain derives from receiving one's own
    message.
    """

    conversation_id: str
    kind: ConversationKind
    members: list[str]
    deliveries: list[list[ReceivedMessage]]
    pull_on_post: bool = False
    # Where the conversation comes from, for error messages.
    source: str = ""

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


class ImportFailedError(Exception):
    """A conversation of a data set breaks a read-state rule."""

    def __init__(self, source: str, error: DomainError) -> None:
        self.source = source
        self.error = error
        super().__init__(f"cannot import {source}: {error}")


def import_conversations(
    app: ReadStateApp,
    conversations: Iterable[ImportedConversation],
    *,
    events_per_transaction: int = 5000,
    # NOTE: eventsourcing 9.5.6 inserts a save as one pipelined statement, and
    # with psycopg 3.3.9 a save of about 18 MB hung for good (4 MB worked).
    # 10,000 messages keep a transaction near 1 MB.
    messages_per_transaction: int = 10_000,
    progress: ImportProgress | None = None,
) -> ImportStats:
    """Record every delivery for every member, saving many aggregates per commit.

    A transaction is committed once it holds `events_per_transaction` events
    or `messages_per_transaction` received messages, whichever comes first,
    also in the middle of a long conversation. Existing aggregates are loaded
    first, so importing the same data again records nothing new.
    """
    importer = _Importer(app, events_per_transaction, messages_per_transaction)
    try:
        for imported in conversations:
            try:
                importer.replay(imported)
            except DomainError as error:
                raise ImportFailedError(imported.source, error) from error
            importer.stats.conversations += 1
            importer.stats.messages += imported.message_count
            if importer.flush_if_full() and progress is not None:
                progress(importer.stats)
    finally:
        # Whatever was replayed is consistent, so a failure keeps it; importing
        # the same data again continues where this run stopped.
        importer.flush()

    if progress is not None:
        progress(importer.stats)
    stats = importer.stats
    logger.info(
        "imported %d conversations, %d messages, %d events in %.1f s",
        stats.conversations,
        stats.messages,
        stats.events,
        stats.elapsed_seconds,
    )
    return stats


class _Importer:
    """Pulls into aggregates and commits them in transactions of bounded size."""

    def __init__(self, app: ReadStateApp, max_events: int, max_messages: int) -> None:
        self.app = app
        self.max_events = max_events
        self.max_messages = max_messages
        self.stats = ImportStats()
        self.started = time.monotonic()
        self.pending: dict[int, Conversation] = {}
        self.pending_messages = 0
        self.seen: set[str] = set()

    def replay(self, imported: ImportedConversation) -> None:
        if imported.conversation_id in self.seen:
            # The same conversation again in one run (a duplicate file, say):
            # commit what is pending so that loading sees it.
            self.flush()
        self.seen.add(imported.conversation_id)
        views = {m: _load_or_start(self.app, imported, m) for m in imported.members}
        for view in views.values():
            self.pending[id(view)] = view
        if imported.pull_on_post:
            self.pull_on_post(imported, views)
        else:
            for delivery in imported.deliveries:
                for view in views.values():
                    self.pull(view, delivery)

    def pull(self, view: Conversation, messages: Sequence[ReceivedMessage]) -> None:
        # Chunks keep each recorded event as small as one API request makes it.
        for start in range(0, len(messages), MAX_MESSAGES_PER_PULL):
            outcome = view.pull(messages[start : start + MAX_MESSAGES_PER_PULL])
            self.pending_messages += len(outcome.new_seqs)
        self.pending[id(view)] = view

    def pull_on_post(
        self, imported: ImportedConversation, views: dict[str, Conversation]
    ) -> None:
        timeline = [m for delivery in imported.deliveries for m in delivery]
        pulled = dict.fromkeys(views, 0)
        for index, message in enumerate(timeline, start=1):
            sender = message.sender_id
            self.pull(views[sender], timeline[pulled[sender] : index])
            pulled[sender] = index
            self.flush_if_full()
        for member, view in views.items():
            self.pull(view, timeline[pulled[member] :])
            self.flush_if_full()

    def flush_if_full(self) -> bool:
        events = sum(len(view.pending_events) for view in self.pending.values())
        if events >= self.max_events or self.pending_messages >= self.max_messages:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        views = [view for view in self.pending.values() if view.pending_events]
        events = sum(len(view.pending_events) for view in views)
        if events:
            self.app.save_many(views)
        self.stats.events += events
        self.stats.elapsed_seconds = time.monotonic() - self.started
        self.pending.clear()
        self.pending_messages = 0


def _load_or_start(
    app: ReadStateApp, imported: ImportedConversation, member: str
) -> Conversation:
    conversation = app.load(member, imported.conversation_id)
    if conversation is not None:
        return conversation
    peers = [m for m in imported.members if m != member]
    peer = peers[0] if imported.kind is ConversationKind.SINGLE and peers else None
    return Conversation.start(member, imported.conversation_id, imported.kind, peer)
