"""The read-state application: commands and queries on Conversation aggregates."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import IntegrityError, Recording

from application.commit import GroupCommitter
from application.errors import ConcurrencyConflictError, ConversationNotFoundError
from application.results import (
    CommandResult,
    ConversationState,
    FanOutResult,
    HistoryEntry,
    PullResult,
)
from domain.conversation import Conversation, PullOutcome, conversation_aggregate_id
from domain.values import (
    ConversationKind,
    ReadCause,
    ReceivedMessage,
    check_conversation_id,
    check_user_id,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Event fields that every event has; the audit output shows them separately.
_EVENT_ENVELOPE_FIELDS = {
    "originator_id",
    "originator_version",
    "timestamp",
    "originator_topic",
}


class ReadStateApp(Application[UUID]):
    """Records read state as events and answers state queries from the log.

    Commands on one aggregate are serialised inside the process by a striped
    lock, so only writers in other processes can cause version conflicts;
    those are retried with a fresh load.
    """

    # The name prefixes PostgreSQL table names; renaming it hides stored data.
    name = "ReadState"
    is_snapshotting_enabled = True

    LOCK_STRIPES = 256
    MAX_ATTEMPTS = 12
    MAX_CACHED_MESSAGES = 1000
    # Backoff before retry n is uniform in [0, min(cap, base * 2**n)] seconds.
    RETRY_BACKOFF_BASE = 0.002
    RETRY_BACKOFF_CAP = 0.1

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        snapshot_interval: int = 100,
        group_commit: bool = True,
        aggregate_cache_size: int = 5000,
    ) -> None:
        super().__init__(env)
        self.snapshot_interval = snapshot_interval
        self._locks = [threading.Lock() for _ in range(self.LOCK_STRIPES)]
        self._save_listeners: list[Callable[[int], None]] = []
        self.aggregate_cache_size = aggregate_cache_size
        self._cache: OrderedDict[UUID, Conversation] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.committer = GroupCommitter(self) if group_commit else None

    def close(self) -> None:
        """Commit queued events, stop the committer and close the database."""
        if self.committer is not None:
            self.committer.stop()
        super().close()

    # ---- commands ----------------------------------------------------------

    def record_messages(
        self,
        owner_id: str,
        conversation_id: str,
        messages: Sequence[ReceivedMessage],
        *,
        kind: ConversationKind | None = None,
        peer_user_id: str | None = None,
        min_seq: int | None = None,
    ) -> PullResult:
        """Record messages the owner received, starting the conversation if new.

        `min_seq` hides the history below it from a new member; it is fixed
        when the conversation starts.
        """

        def start() -> Conversation:
            return Conversation.start(
                owner_id, conversation_id, kind, peer_user_id, min_seq or 1
            )

        def pull(conversation: Conversation) -> PullOutcome:
            conversation.check_matches(kind, peer_user_id, min_seq)
            return conversation.pull(messages)

        conversation, outcome, position = self._execute(
            owner_id, conversation_id, pull, start=start
        )
        return PullResult(
            state=ConversationState.of(conversation),
            position=position if position is not None else self.head_position(),
            changed=position is not None,
            new_seqs=outcome.new_seqs,
            known_seqs=outcome.known_seqs,
        )

    def fan_out(
        self,
        conversation_id: str,
        message: ReceivedMessage,
        recipients: Sequence[str],
        *,
        kind: ConversationKind | None = None,
    ) -> FanOutResult:
        """Record one message for every recipient in a single transaction."""
        check_conversation_id(conversation_id)
        owner_ids = list(dict.fromkeys(check_user_id(r) for r in recipients))
        aggregate_ids = [
            conversation_aggregate_id(o, conversation_id) for o in owner_ids
        ]

        def pull_all(
            loaded: list[Conversation | None],
        ) -> tuple[list[Conversation], list[PullOutcome]]:
            conversations = []
            for owner_id, existing in zip(owner_ids, loaded, strict=True):
                if existing is None:
                    conversations.append(
                        Conversation.start(owner_id, conversation_id, kind)
                    )
                else:
                    existing.check_matches(kind, None)
                    conversations.append(existing)
            outcomes = [c.pull([message]) for c in conversations]
            return conversations, outcomes

        conversations, outcomes, position = self._transact(
            aggregate_ids, pull_all, ",".join(owner_ids), conversation_id
        )
        head = position if position is not None else self.head_position()
        results = [
            PullResult(
                state=ConversationState.of(conversation),
                position=head,
                changed=bool(outcome.new_seqs),
                new_seqs=outcome.new_seqs,
                known_seqs=outcome.known_seqs,
            )
            for conversation, outcome in zip(conversations, outcomes, strict=True)
        ]
        return FanOutResult(recipients=results, position=head)

    def mark_seqs_read(
        self, owner_id: str, conversation_id: str, seqs: Sequence[int]
    ) -> CommandResult:
        """Mark individual seqs read."""
        return self._command(
            owner_id, conversation_id, lambda c: c.mark_seqs_read(seqs)
        )

    def mark_client_msg_ids_read(
        self, owner_id: str, conversation_id: str, client_msg_ids: Sequence[str]
    ) -> CommandResult:
        """Mark messages read by their client message IDs."""
        aggregate_id = conversation_aggregate_id(owner_id, conversation_id)

        def mark(conversation: Conversation) -> bool:
            unresolved = conversation.unresolved_client_msg_ids(client_msg_ids)
            earlier = self._find_client_msg_ids(aggregate_id, unresolved)
            return conversation.mark_client_msg_ids_read(client_msg_ids, earlier)

        return self._command(owner_id, conversation_id, mark)

    def set_has_read_seq(
        self,
        owner_id: str,
        conversation_id: str,
        has_read_seq: int,
        cause: ReadCause = ReadCause.SET,
    ) -> CommandResult:
        """Move the read position forward to `has_read_seq`."""
        return self._command(
            owner_id,
            conversation_id,
            lambda c: c.set_has_read_seq(has_read_seq, cause),
        )

    def mark_conversation_read(
        self, owner_id: str, conversation_id: str, up_to_seq: int
    ) -> CommandResult:
        """Read everything up to the seq the client has shown."""
        return self.set_has_read_seq(
            owner_id, conversation_id, up_to_seq, ReadCause.MARK_CONVERSATION_READ
        )

    # ---- queries -----------------------------------------------------------

    def get_conversation(
        self, owner_id: str, conversation_id: str
    ) -> ConversationState:
        """Load one conversation's current state from the event store."""
        conversation = self._load_existing(owner_id, conversation_id)
        return ConversationState.of(conversation)

    def history(
        self,
        owner_id: str,
        conversation_id: str,
        *,
        after_version: int = 0,
        limit: int | None = None,
        until_version: int | None = None,
        until_time: datetime | None = None,
    ) -> list[HistoryEntry]:
        """Replay a conversation's events, with the state after each one.

        `after_version` and `limit` page through long histories; the state at
        `after_version` is loaded with the help of snapshots.
        """
        aggregate_id = self._aggregate_id(owner_id, conversation_id)
        if aggregate_id not in self.repository:
            raise ConversationNotFoundError(owner_id, conversation_id)
        entries: list[HistoryEntry] = []
        conversation: Conversation | None = None
        if after_version > 0:
            try:
                conversation = self.repository.get(aggregate_id, version=after_version)
            except AggregateNotFoundError:
                return entries
        events: Iterator[Any] = iter(
            self.events.get(
                aggregate_id, gt=after_version or None, lte=until_version, limit=limit
            )
        )
        for event in events:
            if until_time is not None and event.timestamp > until_time:
                break
            conversation = event.mutate(conversation)
            assert conversation is not None
            entries.append(
                HistoryEntry(
                    version=event.originator_version,
                    event_type=type(event).__name__,
                    recorded_at=event.timestamp,
                    event=event_as_dict(event),
                    state=ConversationState.of(conversation),
                )
            )
        return entries

    def head_position(self) -> int:
        """Return the notification ID of the newest event, 0 for an empty log."""
        return self.recorder.max_notification_id() or 0

    # ---- save notifications ------------------------------------------------

    def add_save_listener(self, listener: Callable[[int], None]) -> None:
        """Call `listener(position)` in the saving thread after each commit."""
        self._save_listeners.append(listener)

    def _notify(self, recordings: list[Recording[UUID]]) -> None:
        if not recordings:
            return
        position = recordings[-1].notification.id
        for listener in self._save_listeners:
            listener(position)

    # ---- internals ---------------------------------------------------------

    def _command(
        self,
        owner_id: str,
        conversation_id: str,
        decide: Callable[[Conversation], bool],
    ) -> CommandResult:
        conversation, _, position = self._execute(owner_id, conversation_id, decide)
        return CommandResult(
            state=ConversationState.of(conversation),
            position=position if position is not None else self.head_position(),
            changed=position is not None,
        )

    def _execute(
        self,
        owner_id: str,
        conversation_id: str,
        decide: Callable[[Conversation], T],
        *,
        start: Callable[[], Conversation] | None = None,
    ) -> tuple[Conversation, T, int | None]:
        """Load, decide and save one aggregate, retrying on version conflicts."""
        aggregate_id = self._aggregate_id(owner_id, conversation_id)

        def decide_one(
            loaded: list[Conversation | None],
        ) -> tuple[list[Conversation], T]:
            (conversation,) = loaded
            if conversation is None:
                if start is None:
                    raise ConversationNotFoundError(owner_id, conversation_id)
                conversation = start()
            return [conversation], decide(conversation)

        conversations, outcome, position = self._transact(
            [aggregate_id], decide_one, owner_id, conversation_id
        )
        return conversations[0], outcome, position

    def _transact(
        self,
        aggregate_ids: list[UUID],
        decide: Callable[[list[Conversation | None]], tuple[list[Conversation], T]],
        owner_ids: str,
        conversation_id: str,
    ) -> tuple[list[Conversation], T, int | None]:
        """Run a command on some aggregates and commit its events atomically.

        Aggregates come from the cache when possible. Any failure evicts them,
        because a command may have changed them before failing. A conflict
        with another process is retried with fresh loads.
        """
        with self._locked(aggregate_ids):
            for attempt in range(1, self.MAX_ATTEMPTS + 1):
                loaded = [self._load_for_command(a) for a in aggregate_ids]
                try:
                    conversations, outcome = decide([c for c, _ in loaded])
                except BaseException:
                    self._evict(aggregate_ids)
                    raise
                saved = {c.id: c.collect_events() for c in conversations}
                events = [event for batch in saved.values() for event in batch]
                if not events:
                    if any(cached for _, cached in loaded) and self._cache_is_stale(
                        [c for c, cached in loaded if cached and c is not None]
                    ):
                        self._evict(aggregate_ids)
                        continue
                    return conversations, outcome, None
                try:
                    position = self._commit(events)
                except IntegrityError:
                    self._evict(aggregate_ids)
                    self._log_conflict("command", owner_ids, conversation_id, attempt)
                    continue
                except BaseException:
                    self._evict(aggregate_ids)
                    raise
                for conversation in conversations:
                    self._cache_put(conversation)
                    self._snapshot_if_due(conversation, len(saved[conversation.id]))
                return conversations, outcome, position
        raise ConcurrencyConflictError(owner_ids, conversation_id, self.MAX_ATTEMPTS)

    def _commit(self, events: Sequence[Any]) -> int:
        if self.committer is not None:
            return self.committer.commit(events)
        recordings = self.save(*events)
        return recordings[-1].notification.id

    # ---- aggregate cache ---------------------------------------------------

    def _load_for_command(self, aggregate_id: UUID) -> tuple[Conversation | None, bool]:
        """Return the aggregate and whether it came from the cache.

        The caller holds the aggregate's lock, so no other thread of this
        process uses a cached aggregate at the same time. Writes by other
        processes make a cached aggregate stale; its next save then fails
        with a version conflict, which evicts it.
        """
        with self._cache_lock:
            conversation = self._cache.get(aggregate_id)
            if conversation is not None:
                self._cache.move_to_end(aggregate_id)
                return conversation, True
        return self._load(aggregate_id), False

    def _cache_put(self, conversation: Conversation) -> None:
        # Conversations with many unread messages are large; they are loaded
        # from the store each time instead of filling the cache.
        if (
            self.aggregate_cache_size <= 0
            or conversation.known_message_count > self.MAX_CACHED_MESSAGES
        ):
            self._evict([conversation.id])
            return
        with self._cache_lock:
            self._cache[conversation.id] = conversation
            self._cache.move_to_end(conversation.id)
            while len(self._cache) > self.aggregate_cache_size:
                self._cache.popitem(last=False)

    def _evict(self, aggregate_ids: Iterable[UUID]) -> None:
        with self._cache_lock:
            for aggregate_id in aggregate_ids:
                self._cache.pop(aggregate_id, None)

    def _cache_is_stale(self, conversations: Sequence[Conversation]) -> bool:
        # A command that records nothing cannot detect a conflict, so check
        # that no other process has recorded newer events before answering.
        for conversation in conversations:
            stored = self.recorder.select_events(conversation.id, desc=True, limit=1)
            if stored and stored[0].originator_version != conversation.version:
                return True
        return False

    def _save(self, conversations: Sequence[Conversation]) -> int | None:
        """Save pending events in one transaction; return the last position."""
        pending = {c.id: len(c.pending_events) for c in conversations}
        if not any(pending.values()):
            return None
        recordings = self.save(*conversations)
        for conversation in conversations:
            self._snapshot_if_due(conversation, pending[conversation.id])
        return recordings[-1].notification.id

    def save_many(self, conversations: Sequence[Conversation]) -> int | None:
        """Save new or loaded aggregates in one transaction, for bulk imports."""
        return self._save(conversations)

    def _snapshot_if_due(self, conversation: Conversation, saved: int) -> None:
        # Snapshot the in-memory aggregate when the save crossed a multiple of
        # the interval; the library's own policy would reload it first.
        version = conversation.version
        if saved == 0 or version // self.snapshot_interval == (
            (version - saved) // self.snapshot_interval
        ):
            return
        assert self.snapshots is not None
        try:
            self.snapshots.put([Conversation.Snapshot.take(conversation)])
        except Exception:
            # The events are committed; a missing snapshot only slows loading.
            logger.exception(
                "snapshot of conversation %s of user %s at version %d failed",
                conversation.conversation_id,
                conversation.owner_id,
                version,
            )

    def load(self, owner_id: str, conversation_id: str) -> Conversation | None:
        """Load an aggregate for bulk work, or return None if it does not exist."""
        return self._load(self._aggregate_id(owner_id, conversation_id))

    def _load(self, aggregate_id: UUID) -> Conversation | None:
        try:
            conversation: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(conversation, Conversation)
        return conversation

    def _load_existing(self, owner_id: str, conversation_id: str) -> Conversation:
        conversation = self._load(self._aggregate_id(owner_id, conversation_id))
        if conversation is None:
            raise ConversationNotFoundError(owner_id, conversation_id)
        return conversation

    @staticmethod
    def _aggregate_id(owner_id: str, conversation_id: str) -> UUID:
        check_user_id(owner_id)
        check_conversation_id(conversation_id)
        return conversation_aggregate_id(owner_id, conversation_id)

    def _find_client_msg_ids(
        self, aggregate_id: UUID, client_msg_ids: Sequence[str]
    ) -> dict[str, int]:
        """Find client message IDs in the recorded history of one aggregate."""
        if not client_msg_ids:
            return {}
        wanted = set(client_msg_ids)
        found: dict[str, int] = {}
        for event in self.events.get(aggregate_id):
            if isinstance(event, Conversation.MessagesPulled):
                for message in event.messages:
                    if message["client_msg_id"] in wanted:
                        found[message["client_msg_id"]] = message["seq"]
        return found

    @contextmanager
    def _locked(self, aggregate_ids: Sequence[UUID]) -> Iterator[None]:
        # Acquire stripes in index order so that two fan-outs cannot deadlock.
        stripes = sorted(
            {aggregate_id.int % self.LOCK_STRIPES for aggregate_id in aggregate_ids}
        )
        with ExitStack() as stack:
            for stripe in stripes:
                stack.enter_context(self._locks[stripe])
            yield

    @staticmethod
    def _log_conflict(
        what: str, owner_ids: str, conversation_id: str, attempt: int
    ) -> None:
        logger.warning(
            "version conflict on %s for user %s in conversation %s, "
            "attempt %d: retrying",
            what,
            owner_ids,
            conversation_id,
            attempt,
        )
        # Full-jitter exponential backoff, so that competing processes spread
        # out their retries instead of colliding again.
        ceiling = min(
            ReadStateApp.RETRY_BACKOFF_CAP,
            ReadStateApp.RETRY_BACKOFF_BASE * 2**attempt,
        )
        time.sleep(random.uniform(0, ceiling))  # noqa: S311 (not for security)


def event_as_dict(event: Any) -> dict[str, Any]:
    """Return an event's own fields, without the envelope every event has."""
    return {k: v for k, v in vars(event).items() if k not in _EVENT_ENVELOPE_FIELDS}
