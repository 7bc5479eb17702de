"""Unread-count projection: per conversation and per user totals, from events only."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol
from uuid import UUID

from application.projections import ProjectedEvent, ReadModels
from application.results import UnreadConversation, UnreadTotals
from domain.conversation import Conversation
from domain.values import check_user_id


@dataclass(frozen=True)
class UnreadRow:
    """Stored unread state of one (owner, conversation) pair."""

    aggregate_id: UUID
    owner_id: str
    conversation_id: str
    kind: str
    max_seq: int
    has_read_seq: int
    unread_count: int
    updated_at: datetime


@dataclass(frozen=True)
class UnreadSummary:
    """Unread counts over every owner in the read model."""

    owners: int
    conversations: int
    total_unread: int


@dataclass(frozen=True)
class TotalsDelta:
    """Change of one owner's totals caused by one batch."""

    owner_id: str
    unread: int
    conversations_with_unread: int
    updated_at: datetime


class UnreadCountsTransaction(Protocol):
    """Reads and writes inside one read-model transaction."""

    def load_rows(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, UnreadRow]:
        """Return the stored rows of these aggregates that exist."""
        ...

    def save_rows(self, rows: Sequence[UnreadRow]) -> None:
        """Insert or replace rows."""
        ...

    def add_to_totals(self, deltas: Sequence[TotalsDelta]) -> None:
        """Add deltas to the owners' totals, creating missing owners."""
        ...


class UnreadCountsView(Protocol):
    """Storage of the unread-count read model and its tracking position."""

    def position(self) -> int:
        """Return the stored tracking position."""
        ...

    def transaction(
        self, expected_position: int, new_position: int
    ) -> AbstractContextManager[UnreadCountsTransaction]:
        """Open a transaction that first moves the position from expected to new.

        Raises `ProjectionPositionMovedError` when the stored position is not
        `expected_position`; the transaction is then rolled back.
        """
        ...

    def reset(self) -> None:
        """Delete all rows and totals and set the position to 0, atomically."""
        ...

    def snapshot(
        self, owner_id: str, *, after: str | None, limit: int, include_read: bool
    ) -> tuple[UnreadTotals, list[UnreadConversation], int]:
        """Read totals, a page of rows by conversation ID and the position at once.

        All three come from one consistent snapshot of the read model.
        """
        ...

    async def snapshot_async(
        self, owner_id: str, *, after: str | None, limit: int, include_read: bool
    ) -> tuple[UnreadTotals, list[UnreadConversation], int]:
        """Read like `snapshot`, awaited on the event loop."""
        ...

    def summary(self) -> UnreadSummary:
        """Return counts over all owners."""
        ...


class UnreadCountsProjection:
    """Folds conversation events into unread rows and per-owner totals."""

    name = "unread_counts"

    def __init__(self, view: UnreadCountsView) -> None:
        self.view = view

    def position(self) -> int:
        """Return the stored tracking position."""
        return self.view.position()

    def reset(self) -> None:
        """Delete the read model's rows and set its position to 0."""
        self.view.reset()

    def process(
        self, batch: Sequence[ProjectedEvent], expected_position: int, new_position: int
    ) -> None:
        """Apply a batch of events and move the position in one transaction."""
        events = [item.event for item in batch if _is_conversation_event(item.event)]
        with self.view.transaction(expected_position, new_position) as tx:
            if not events:
                return
            started = {
                e.originator_id for e in events if isinstance(e, Conversation.Started)
            }
            existing = tx.load_rows(
                sorted({e.originator_id for e in events} - started, key=str)
            )
            rows = dict(existing)
            for event in events:
                rows[event.originator_id] = _apply(rows.get(event.originator_id), event)

            tx.save_rows(list(rows.values()))
            tx.add_to_totals(list(_totals_deltas(existing, rows)))


def _is_conversation_event(event: object) -> bool:
    return isinstance(
        event,
        (
            Conversation.Started,
            Conversation.MessagesPulled,
            Conversation.MessagesMarkedRead,
            Conversation.HasReadSeqSet,
        ),
    )


def _apply(row: UnreadRow | None, event: Conversation.Event) -> UnreadRow:
    if isinstance(event, Conversation.Started):
        return UnreadRow(
            aggregate_id=event.originator_id,
            owner_id=event.owner_id,
            conversation_id=event.conversation_id,
            kind=event.kind,
            max_seq=0,
            has_read_seq=0,
            unread_count=0,
            updated_at=event.timestamp,
        )
    if row is None:
        msg = (
            f"unread_counts has no row for aggregate {event.originator_id}, "
            f"whose event {type(event).__name__} at version "
            f"{event.originator_version} follows its start: rebuild the projection"
        )
        raise LookupError(msg)
    if isinstance(event, Conversation.MessagesPulled):
        return replace(
            row,
            max_seq=event.max_seq,
            unread_count=event.unread_count,
            updated_at=event.timestamp,
        )
    if isinstance(event, Conversation.MessagesMarkedRead | Conversation.HasReadSeqSet):
        return replace(
            row,
            has_read_seq=event.has_read_seq,
            unread_count=event.unread_count,
            updated_at=event.timestamp,
        )
    return row


def _totals_deltas(
    before: dict[UUID, UnreadRow], after: dict[UUID, UnreadRow]
) -> Iterator[TotalsDelta]:
    unread: dict[str, int] = {}
    with_unread: dict[str, int] = {}
    updated_at: dict[str, datetime] = {}
    for aggregate_id, row in after.items():
        old = before.get(aggregate_id)
        old_unread = old.unread_count if old is not None else 0
        owner = row.owner_id
        unread[owner] = unread.get(owner, 0) + row.unread_count - old_unread
        with_unread[owner] = (
            with_unread.get(owner, 0) + (row.unread_count > 0) - (old_unread > 0)
        )
        if owner not in updated_at or row.updated_at > updated_at[owner]:
            updated_at[owner] = row.updated_at
    for owner, delta in unread.items():
        yield TotalsDelta(owner, delta, with_unread[owner], updated_at[owner])


@dataclass(frozen=True)
class UnreadPage:
    """A user's totals and one page of per-conversation rows, read together."""

    totals: UnreadTotals
    conversations: list[UnreadConversation]
    next_cursor: str | None
    position: int


class UnreadQueries:
    """Answers unread-count queries once the read model reached a position."""

    def __init__(self, view: UnreadCountsView, read_models: ReadModels) -> None:
        self.view = view
        self.read_models = read_models

    async def page(
        self,
        owner_id: str,
        *,
        after: str | None,
        limit: int,
        include_read: bool,
        min_position: int,
        timeout: float,
    ) -> UnreadPage:
        """Wait for `min_position`, then read totals and one page of rows.

        The stored position is read together with the rows, so a page is never
        older than `min_position`, even right after a rebuild elsewhere.
        """
        check_user_id(owner_id)

        async def read() -> tuple[tuple[UnreadTotals, list[UnreadConversation]], int]:
            totals, rows, position = await self.view.snapshot_async(
                owner_id, after=after, limit=limit + 1, include_read=include_read
            )
            return (totals, rows), position

        (totals, rows), position = await self.read_models.read_reached(
            UnreadCountsProjection.name, min_position, timeout, read
        )
        next_cursor = rows[limit - 1].conversation_id if len(rows) > limit else None
        return UnreadPage(totals, rows[:limit], next_cursor, position)
