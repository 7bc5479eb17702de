"""The read-state application: commands and queries on Conversation aggregates."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.persistence import Recording

from application.commit import GroupCommitter
from application.errors import ConversationNotFoundError
from application.execution import AggregateCache, CommandExecutor, CommandPlan
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
    kind_from_prefix,
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

    Each command has a blocking method and an `_async` twin for the API; both
    run the same plan through the `CommandExecutor`.
    """

    # The name prefixes PostgreSQL table names; renaming it hides stored data.
    name = "ReadState"
    is_snapshotting_enabled = True

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
        self._save_listeners: list[Callable[[int], None]] = []
        self.committer = GroupCommitter(self) if group_commit else None
        self.executor = CommandExecutor(self, AggregateCache(aggregate_cache_size))

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
        return self.executor.run(
            self._record_plan(
                owner_id, conversation_id, messages, kind, peer_user_id, min_seq
            )
        )

    async def record_messages_async(
        self,
        owner_id: str,
        conversation_id: str,
        messages: Sequence[ReceivedMessage],
        *,
        kind: ConversationKind | None = None,
        peer_user_id: str | None = None,
        min_seq: int | None = None,
    ) -> PullResult:
        """Record received messages without blocking the event loop."""
        return await self.executor.run_async(
            self._record_plan(
                owner_id, conversation_id, messages, kind, peer_user_id, min_seq
            )
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
        return self.executor.run(
            self._fan_out_plan(conversation_id, message, recipients, kind)
        )

    async def fan_out_async(
        self,
        conversation_id: str,
        message: ReceivedMessage,
        recipients: Sequence[str],
        *,
        kind: ConversationKind | None = None,
    ) -> FanOutResult:
        """Record one message for every recipient without blocking the loop."""
        return await self.executor.run_async(
            self._fan_out_plan(conversation_id, message, recipients, kind)
        )

    def mark_seqs_read(
        self, owner_id: str, conversation_id: str, seqs: Sequence[int]
    ) -> CommandResult:
        """Mark individual seqs read."""
        return self.executor.run(self._mark_seqs_plan(owner_id, conversation_id, seqs))

    async def mark_seqs_read_async(
        self, owner_id: str, conversation_id: str, seqs: Sequence[int]
    ) -> CommandResult:
        """Mark individual seqs read without blocking the event loop."""
        return await self.executor.run_async(
            self._mark_seqs_plan(owner_id, conversation_id, seqs)
        )

    def mark_client_msg_ids_read(
        self, owner_id: str, conversation_id: str, client_msg_ids: Sequence[str]
    ) -> CommandResult:
        """Mark messages read by their client message IDs."""
        return self.executor.run(
            self._mark_client_ids_plan(owner_id, conversation_id, client_msg_ids)
        )

    async def mark_client_msg_ids_read_async(
        self, owner_id: str, conversation_id: str, client_msg_ids: Sequence[str]
    ) -> CommandResult:
        """Mark messages read by client message IDs, in a worker thread."""
        return await self.executor.run_async(
            self._mark_client_ids_plan(owner_id, conversation_id, client_msg_ids)
        )

    def set_has_read_seq(
        self,
        owner_id: str,
        conversation_id: str,
        has_read_seq: int,
        cause: ReadCause = ReadCause.SET,
    ) -> CommandResult:
        """Move the read position forward to `has_read_seq`."""
        return self.executor.run(
            self._set_has_read_seq_plan(owner_id, conversation_id, has_read_seq, cause)
        )

    async def set_has_read_seq_async(
        self,
        owner_id: str,
        conversation_id: str,
        has_read_seq: int,
        cause: ReadCause = ReadCause.SET,
    ) -> CommandResult:
        """Move the read position forward without blocking the event loop."""
        return await self.executor.run_async(
            self._set_has_read_seq_plan(owner_id, conversation_id, has_read_seq, cause)
        )

    def mark_conversation_read(
        self, owner_id: str, conversation_id: str, up_to_seq: int
    ) -> CommandResult:
        """Read everything up to the seq the client has shown."""
        return self.set_has_read_seq(
            owner_id, conversation_id, up_to_seq, ReadCause.MARK_CONVERSATION_READ
        )

    async def mark_conversation_read_async(
        self, owner_id: str, conversation_id: str, up_to_seq: int
    ) -> CommandResult:
        """Read everything up to a seq without blocking the event loop."""
        return await self.set_has_read_seq_async(
            owner_id, conversation_id, up_to_seq, ReadCause.MARK_CONVERSATION_READ
        )

    # ---- command plans -----------------------------------------------------

    def _record_plan(
        self,
        owner_id: str,
        conversation_id: str,
        messages: Sequence[ReceivedMessage],
        kind: ConversationKind | None,
        peer_user_id: str | None,
        min_seq: int | None,
    ) -> CommandPlan[PullOutcome, PullResult]:
        def decide(
            loaded: list[Conversation | None],
        ) -> tuple[list[Conversation], PullOutcome]:
            (conversation,) = loaded
            if conversation is None:
                conversation = Conversation.start(
                    owner_id, conversation_id, kind, peer_user_id, min_seq or 1
                )
            else:
                conversation.check_matches(kind, peer_user_id, min_seq)
            return [conversation], conversation.pull(messages)

        def finish(
            conversations: list[Conversation],
            outcome: PullOutcome,
            position: int | None,
        ) -> PullResult:
            return PullResult(
                state=ConversationState.of(conversations[0]),
                position=position if position is not None else self.head_position(),
                changed=position is not None,
                new_seqs=outcome.new_seqs,
                known_seqs=outcome.known_seqs,
            )

        return CommandPlan(
            [self._aggregate_id(owner_id, conversation_id)],
            decide,
            finish,
            owner_id,
            conversation_id,
        )

    def _fan_out_plan(
        self,
        conversation_id: str,
        message: ReceivedMessage,
        recipients: Sequence[str],
        kind: ConversationKind | None,
    ) -> CommandPlan[list[PullOutcome], FanOutResult]:
        check_conversation_id(conversation_id)
        owner_ids = list(dict.fromkeys(check_user_id(r) for r in recipients))
        # An explicit single chat fanned out to its two members names each
        # one's peer; prefixed IDs name them already.
        peers: dict[str, str] = {}
        if (
            kind is ConversationKind.SINGLE
            and kind_from_prefix(conversation_id) is None
            and len(owner_ids) == 2
        ):
            first, second = owner_ids
            peers = {first: second, second: first}

        def decide(
            loaded: list[Conversation | None],
        ) -> tuple[list[Conversation], list[PullOutcome]]:
            conversations = []
            for owner_id, existing in zip(owner_ids, loaded, strict=True):
                if existing is None:
                    conversations.append(
                        Conversation.start(
                            owner_id, conversation_id, kind, peers.get(owner_id)
                        )
                    )
                else:
                    existing.check_matches(kind, None)
                    conversations.append(existing)
            return conversations, [c.pull([message]) for c in conversations]

        def finish(
            conversations: list[Conversation],
            outcomes: list[PullOutcome],
            position: int | None,
        ) -> FanOutResult:
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

        return CommandPlan(
            [conversation_aggregate_id(o, conversation_id) for o in owner_ids],
            decide,
            finish,
            ",".join(owner_ids),
            conversation_id,
        )

    def _single_plan(
        self,
        owner_id: str,
        conversation_id: str,
        decide_one: Callable[[Conversation], bool],
        *,
        pure: bool = True,
    ) -> CommandPlan[bool, CommandResult]:
        def decide(
            loaded: list[Conversation | None],
        ) -> tuple[list[Conversation], bool]:
            (conversation,) = loaded
            if conversation is None:
                raise ConversationNotFoundError(owner_id, conversation_id)
            return [conversation], decide_one(conversation)

        def finish(
            conversations: list[Conversation], _changed: bool, position: int | None
        ) -> CommandResult:
            return CommandResult(
                state=ConversationState.of(conversations[0]),
                position=position if position is not None else self.head_position(),
                changed=position is not None,
            )

        return CommandPlan(
            [self._aggregate_id(owner_id, conversation_id)],
            decide,
            finish,
            owner_id,
            conversation_id,
            pure,
        )

    def _mark_seqs_plan(
        self, owner_id: str, conversation_id: str, seqs: Sequence[int]
    ) -> CommandPlan[bool, CommandResult]:
        return self._single_plan(
            owner_id, conversation_id, lambda c: c.mark_seqs_read(seqs)
        )

    def _mark_client_ids_plan(
        self, owner_id: str, conversation_id: str, client_msg_ids: Sequence[str]
    ) -> CommandPlan[bool, CommandResult]:
        aggregate_id = self._aggregate_id(owner_id, conversation_id)

        def mark(conversation: Conversation) -> bool:
            unresolved = conversation.unresolved_client_msg_ids(client_msg_ids)
            earlier = self._find_client_msg_ids(aggregate_id, unresolved)
            return conversation.mark_client_msg_ids_read(client_msg_ids, earlier)

        # Resolving old IDs reads the history, so this never runs on the loop.
        return self._single_plan(owner_id, conversation_id, mark, pure=False)

    def _set_has_read_seq_plan(
        self, owner_id: str, conversation_id: str, has_read_seq: int, cause: ReadCause
    ) -> CommandPlan[bool, CommandResult]:
        return self._single_plan(
            owner_id,
            conversation_id,
            lambda c: c.set_has_read_seq(has_read_seq, cause),
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

    def _save(self, conversations: Sequence[Conversation]) -> int | None:
        """Save pending events in one transaction; return the last position."""
        pending = {c.id: len(c.pending_events) for c in conversations}
        if not any(pending.values()):
            return None
        recordings = self.save(*conversations)
        for conversation in conversations:
            self.snapshot_if_due(conversation, pending[conversation.id])
        return recordings[-1].notification.id

    def save_many(self, conversations: Sequence[Conversation]) -> int | None:
        """Save new or loaded aggregates in one transaction, for bulk imports."""
        return self._save(conversations)

    def snapshot_if_due(self, conversation: Conversation, saved: int) -> None:
        """Snapshot a saved aggregate if the save crossed a multiple of the interval."""
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
        return self.load_by_id(self._aggregate_id(owner_id, conversation_id))

    def load_by_id(self, aggregate_id: UUID) -> Conversation | None:
        """Load an aggregate from the store, or return None if it does not exist."""
        try:
            conversation: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        assert isinstance(conversation, Conversation)
        return conversation

    def _load_existing(self, owner_id: str, conversation_id: str) -> Conversation:
        conversation = self.load_by_id(self._aggregate_id(owner_id, conversation_id))
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


def event_as_dict(event: Any) -> dict[str, Any]:
    """Return an event's own fields, without the envelope every event has."""
    return {k: v for k, v in vars(event).items() if k not in _EVENT_ENVELOPE_FIELDS}
