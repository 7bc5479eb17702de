"""Receipt projection: who is told about each read, and who read each group message.

For every effective read by a user R in a conversation C (including a message
that R had read when it arrived, because it came late or was marked read
before), the projection adds to an ordered feed per recipient:

- `read_state` for R's own devices: new position, newly read seqs, unread
  count (not for reads on arrival, which change neither);
- `peer_read` for the peer of a single chat: R and the peer's messages R read;
- `group_read` for each sender of newly read group messages: R and, per
  message, its read count after this read.

It also keeps, per group message, its readers with the time they read it and
the read count. A reader counts only if the message was visible to them (seq
not below their `min_seq`) and they did not send it. One projection keeps both
read models, so the counts in notifications always match the readers table.

A notification's position is the log position of the event that caused it
and its ID is derived from that event and the recipient, so a rebuild
reproduces the same feed. One event notifies each recipient at most once,
which makes (recipient, position) unique.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from functools import partial
from typing import Any, Protocol
from uuid import UUID, uuid5

import anyio.to_thread

from application.errors import ApplicationError
from application.projections import ProjectedEvent, ReadModels
from domain.conversation import Conversation
from domain.values import (
    ConversationKind,
    check_conversation_id,
    check_user_id,
    to_ranges,
)

# Fixed namespace of notification IDs. Changing it changes every ID in the feed.
RECEIPT_NAMESPACE = UUID("0b7e3f5a-91c2-5d4e-a6f8-2c1d9e8b7a60")


class ReceiptKind(StrEnum):
    """Kind of feed notification."""

    READ_STATE = "read_state"
    PEER_READ = "peer_read"
    GROUP_READ = "group_read"


@dataclass(frozen=True)
class Receipt:
    """One notification in a recipient's feed."""

    recipient_id: str
    position: int
    notification_id: UUID
    kind: str
    conversation_id: str
    reader_id: str
    created_at: datetime
    payload: dict[str, Any]


@dataclass(frozen=True)
class ReceiptConversation:
    """What the projection needs to know about one aggregate, from its start."""

    aggregate_id: UUID
    owner_id: str
    conversation_id: str
    kind: str
    peer_user_id: str | None
    min_seq: int


@dataclass
class GroupMessage:
    """A group message, its sender and its read count."""

    conversation_id: str
    seq: int
    sender_id: str
    read_count: int = 0


@dataclass(frozen=True)
class GroupReader:
    """One member's read of one group message."""

    conversation_id: str
    seq: int
    reader_id: str
    read_at: datetime


class GroupMessageNotFoundError(ApplicationError):
    """No group message with this seq was recorded in the conversation."""

    def __init__(self, conversation_id: str, seq: int) -> None:
        self.conversation_id = conversation_id
        self.seq = seq
        super().__init__(
            f"group message {seq} of conversation {conversation_id!r} not found: "
            "read receipts exist only for recorded messages of group conversations"
        )


class ReceiptsTransaction(Protocol):
    """Reads and writes inside one receipts transaction."""

    def load_conversations(
        self, aggregate_ids: Sequence[UUID]
    ) -> dict[UUID, ReceiptConversation]:
        """Return the stored conversations of these aggregates that exist."""
        ...

    def save_conversations(self, rows: Sequence[ReceiptConversation]) -> None:
        """Insert conversations started in this batch."""
        ...

    def add_group_messages(self, messages: Sequence[GroupMessage]) -> None:
        """Insert group messages that are not stored yet."""
        ...

    def load_group_messages(
        self, conversation_id: str, first_seq: int, last_seq: int
    ) -> list[GroupMessage]:
        """Return the stored messages of a group within a seq range."""
        ...

    def add_readers(self, readers: Sequence[GroupReader]) -> None:
        """Insert readers of group messages."""
        ...

    def save_read_counts(self, messages: Sequence[GroupMessage]) -> None:
        """Store the read counts of these messages."""
        ...

    def add_receipts(self, receipts: Sequence[Receipt]) -> None:
        """Append notifications to the feed."""
        ...


class ReceiptsView(Protocol):
    """Storage of the receipt feed and group read receipts."""

    def position(self) -> int:
        """Return the stored tracking position."""
        ...

    def transaction(
        self, expected_position: int, new_position: int
    ) -> AbstractContextManager[ReceiptsTransaction]:
        """Open a transaction that first moves the position (compare and set)."""
        ...

    def reset(self) -> None:
        """Delete all rows and set the position to 0, atomically."""
        ...

    def feed(
        self, recipient_id: str, *, after: int, limit: int
    ) -> tuple[list[Receipt], int]:
        """Return notifications after a feed position, and the stored position."""
        ...

    def group_message(self, conversation_id: str, seq: int) -> GroupMessage | None:
        """Return one group message with its read count."""
        ...

    def readers(
        self, conversation_id: str, seq: int, *, after: str, limit: int
    ) -> list[GroupReader]:
        """Page through a message's readers, ordered by user ID."""
        ...

    def not_read_by(
        self, message: GroupMessage, *, after: str, limit: int
    ) -> list[str]:
        """Page through members who could see the message and did not read it."""
        ...

    def checksums(self) -> dict[str, str]:
        """Return a digest of each table, for comparing rebuilds."""
        ...


@dataclass
class _Batch:
    """Rows one batch of events adds or changes."""

    conversations: dict[UUID, ReceiptConversation] = field(default_factory=dict)
    new_conversations: list[ReceiptConversation] = field(default_factory=list)
    group_messages: dict[tuple[str, int], GroupMessage] = field(default_factory=dict)
    changed_counts: dict[tuple[str, int], GroupMessage] = field(default_factory=dict)
    readers: list[GroupReader] = field(default_factory=list)
    receipts: list[Receipt] = field(default_factory=list)


class ReceiptsProjection:
    """Folds read events into the feed and the group read receipts."""

    name = "receipts"

    def __init__(self, view: ReceiptsView) -> None:
        self.view = view

    def position(self) -> int:
        """Return the stored tracking position."""
        return self.view.position()

    def reset(self) -> None:
        """Delete the read models' rows and set the position to 0."""
        self.view.reset()

    def process(
        self, batch: Sequence[ProjectedEvent], expected_position: int, new_position: int
    ) -> None:
        """Apply a batch of events and move the position in one transaction."""
        items = [item for item in batch if isinstance(item.event, Conversation.Event)]
        with self.view.transaction(expected_position, new_position) as tx:
            if not items:
                return
            state = _Batch()
            self._load_conversations(tx, items, state)
            self._add_group_messages(tx, items, state)
            self._load_read_counts(tx, items, state)
            for item in items:
                self._apply(item, state)

            tx.save_conversations(state.new_conversations)
            tx.add_readers(state.readers)
            tx.save_read_counts(list(state.changed_counts.values()))
            tx.add_receipts(state.receipts)

    # ---- loading what the batch needs --------------------------------------

    def _load_conversations(
        self, tx: ReceiptsTransaction, items: Sequence[ProjectedEvent], state: _Batch
    ) -> None:
        for item in items:
            event = item.event
            if isinstance(event, Conversation.Started):
                row = ReceiptConversation(
                    aggregate_id=event.originator_id,
                    owner_id=event.owner_id,
                    conversation_id=event.conversation_id,
                    kind=event.kind,
                    peer_user_id=event.peer_user_id,
                    min_seq=event.min_seq,
                )
                state.conversations[row.aggregate_id] = row
                state.new_conversations.append(row)
        missing = {i.event.originator_id for i in items} - set(state.conversations)
        state.conversations.update(tx.load_conversations(sorted(missing, key=str)))

    def _add_group_messages(
        self, tx: ReceiptsTransaction, items: Sequence[ProjectedEvent], state: _Batch
    ) -> None:
        # Every member's pull carries the message, so the first one stores it.
        for item in items:
            event = item.event
            if not isinstance(event, Conversation.MessagesPulled):
                continue
            conversation = self._conversation(state, event)
            if conversation.kind != ConversationKind.GROUP:
                continue
            for message in event.messages:
                key = (conversation.conversation_id, message["seq"])
                if key not in state.group_messages:
                    state.group_messages[key] = GroupMessage(
                        conversation.conversation_id,
                        message["seq"],
                        message["sender_id"],
                    )
        tx.add_group_messages(list(state.group_messages.values()))
        state.group_messages.clear()

    def _load_read_counts(
        self, tx: ReceiptsTransaction, items: Sequence[ProjectedEvent], state: _Batch
    ) -> None:
        spans: dict[str, list[int]] = {}
        for item in items:
            event = item.event
            if isinstance(event, Conversation.MessagesPulled):
                read = event.read_on_arrival
            elif isinstance(
                event, Conversation.MessagesMarkedRead | Conversation.HasReadSeqSet
            ):
                read = [r for ranges in event.senders.values() for r in ranges]
            else:
                continue
            conversation = self._conversation(state, event)
            if conversation.kind != ConversationKind.GROUP or not read:
                continue
            firsts = [r[0] for r in read]
            lasts = [r[1] for r in read]
            span = spans.setdefault(
                conversation.conversation_id, [min(firsts), max(lasts)]
            )
            span[0] = min(span[0], *firsts)
            span[1] = max(span[1], *lasts)
        for conversation_id, (first, last) in spans.items():
            for message in tx.load_group_messages(conversation_id, first, last):
                state.group_messages[(conversation_id, message.seq)] = message

    # ---- folding one event -------------------------------------------------

    def _apply(self, item: ProjectedEvent, state: _Batch) -> None:
        event = item.event
        if isinstance(event, Conversation.MessagesPulled):
            if event.read_on_arrival:
                self._apply_reads(item, state, _read_on_arrival(event))
            return
        if not isinstance(
            event, Conversation.MessagesMarkedRead | Conversation.HasReadSeqSet
        ):
            return
        conversation = self._conversation(state, event)
        self._receipt(
            item,
            conversation,
            state,
            conversation.owner_id,
            ReceiptKind.READ_STATE,
            {
                "has_read_seq": event.has_read_seq,
                "read_seqs": event.seqs,
                "unread_count": event.unread_count,
            },
        )
        self._apply_reads(item, state, event.senders)

    def _apply_reads(
        self,
        item: ProjectedEvent,
        state: _Batch,
        senders: dict[str, list[list[int]]],
    ) -> None:
        """Notify the senders of newly read messages, by conversation kind."""
        conversation = self._conversation(state, item.event)
        reader = conversation.owner_id
        if conversation.kind == ConversationKind.GROUP:
            self._apply_group_read(item, conversation, state, senders)
            return
        peer = conversation.peer_user_id
        peer_seqs = senders.get(peer) if peer is not None else None
        if peer is not None and peer != reader and peer_seqs:
            self._receipt(
                item,
                conversation,
                state,
                peer,
                ReceiptKind.PEER_READ,
                {"seqs": peer_seqs},
            )

    def _apply_group_read(
        self,
        item: ProjectedEvent,
        conversation: ReceiptConversation,
        state: _Batch,
        senders: dict[str, list[list[int]]],
    ) -> None:
        event = item.event
        reader = conversation.owner_id
        for sender, ranges in sorted(senders.items()):
            if sender == reader:
                continue
            read_messages = []
            for seq in _expand(ranges):
                message = state.group_messages.get((conversation.conversation_id, seq))
                if message is None or seq < conversation.min_seq:
                    continue
                message.read_count += 1
                state.changed_counts[(message.conversation_id, seq)] = message
                state.readers.append(
                    GroupReader(
                        conversation.conversation_id, seq, reader, event.timestamp
                    )
                )
                read_messages.append({"seq": seq, "read_count": message.read_count})
            if read_messages:
                self._receipt(
                    item,
                    conversation,
                    state,
                    sender,
                    ReceiptKind.GROUP_READ,
                    {"messages": read_messages},
                )

    def _receipt(
        self,
        item: ProjectedEvent,
        conversation: ReceiptConversation,
        state: _Batch,
        recipient: str,
        kind: ReceiptKind,
        payload: dict[str, Any],
    ) -> None:
        event = item.event
        state.receipts.append(
            Receipt(
                recipient_id=recipient,
                position=item.position,
                notification_id=uuid5(
                    RECEIPT_NAMESPACE,
                    f"{event.originator_id}/{event.originator_version}/{recipient}",
                ),
                kind=kind.value,
                conversation_id=conversation.conversation_id,
                reader_id=conversation.owner_id,
                created_at=event.timestamp,
                payload=payload,
            )
        )

    @staticmethod
    def _conversation(state: _Batch, event: Conversation.Event) -> ReceiptConversation:
        try:
            return state.conversations[event.originator_id]
        except KeyError:
            msg = (
                f"receipts has no conversation for aggregate {event.originator_id}, "
                f"whose event {type(event).__name__} at version "
                f"{event.originator_version} follows its start: rebuild the projection"
            )
            raise LookupError(msg) from None


def _read_on_arrival(event: Conversation.MessagesPulled) -> dict[str, list[list[int]]]:
    """Group the messages the owner had read when they arrived by sender."""
    arrived = set(_expand(event.read_on_arrival))
    senders: dict[str, list[int]] = {}
    for message in event.messages:
        if message["seq"] in arrived:
            senders.setdefault(message["sender_id"], []).append(message["seq"])
    return {sender: to_ranges(seqs) for sender, seqs in senders.items()}


def _expand(ranges: Iterable[Sequence[int]]) -> Iterator[int]:
    # Ranges in `senders` list known messages only, so expanding them is
    # bounded by the messages the reader received.
    for first, last in ranges:
        yield from range(first, last + 1)


@dataclass(frozen=True)
class FeedPage:
    """Notifications of one recipient after a cursor."""

    receipts: list[Receipt]
    next_after: int | None
    position: int


@dataclass(frozen=True)
class ReadersPage:
    """A group message's read count, a page of readers and of members who did not."""

    message: GroupMessage
    readers: list[GroupReader]
    next_readers_after: str | None
    not_read_by: list[str]
    next_not_read_after: str | None


class ReceiptQueries:
    """Answers feed and group read-receipt queries."""

    def __init__(self, view: ReceiptsView, read_models: ReadModels) -> None:
        self.view = view
        self.read_models = read_models

    async def feed(
        self,
        recipient_id: str,
        *,
        after: int,
        limit: int,
        min_position: int,
        timeout: float,
    ) -> FeedPage:
        """Wait for `min_position`, then return notifications after `after`."""
        check_user_id(recipient_id)

        async def read() -> tuple[list[Receipt], int]:
            return await anyio.to_thread.run_sync(
                partial(self.view.feed, recipient_id, after=after, limit=limit + 1)
            )

        receipts, position = await self.read_models.read_reached(
            ReceiptsProjection.name, min_position, timeout, read
        )
        next_after = receipts[limit - 1].position if len(receipts) > limit else None
        return FeedPage(receipts[:limit], next_after, position)

    async def readers(
        self,
        conversation_id: str,
        seq: int,
        *,
        readers_after: str,
        not_read_after: str,
        limit: int,
        min_position: int,
        timeout: float,
    ) -> ReadersPage:
        """Wait for `min_position`, then return one group message's read receipts."""
        check_conversation_id(conversation_id)

        async def read() -> tuple[ReadersPage | None, int]:
            # The position is read first, so the rows are at least that new;
            # while it is behind (a rebuild elsewhere), the message may be
            # missing, which must not answer 404.
            position = await anyio.to_thread.run_sync(self.view.position)
            if position < min_position:
                return None, position
            page = await anyio.to_thread.run_sync(
                partial(
                    self._readers_now,
                    conversation_id,
                    seq,
                    readers_after=readers_after,
                    not_read_after=not_read_after,
                    limit=limit,
                )
            )
            return page, position

        page, _ = await self.read_models.read_reached(
            ReceiptsProjection.name, min_position, timeout, read
        )
        assert page is not None
        return page

    def _readers_now(
        self,
        conversation_id: str,
        seq: int,
        *,
        readers_after: str,
        not_read_after: str,
        limit: int,
    ) -> ReadersPage:
        message = self.view.group_message(conversation_id, seq)
        if message is None:
            raise GroupMessageNotFoundError(conversation_id, seq)
        readers = self.view.readers(
            conversation_id, seq, after=readers_after, limit=limit + 1
        )
        not_read = self.view.not_read_by(message, after=not_read_after, limit=limit + 1)
        return ReadersPage(
            message=message,
            readers=readers[:limit],
            next_readers_after=readers[limit - 1].reader_id
            if len(readers) > limit
            else None,
            not_read_by=not_read[:limit],
            next_not_read_after=not_read[limit - 1] if len(not_read) > limit else None,
        )
