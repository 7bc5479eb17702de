"""Unread-count read model tables on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any
from uuid import UUID

import anyio.to_thread
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from application.results import UnreadConversation, UnreadTotals
from application.unread import (
    TotalsDelta,
    UnreadCountsProjection,
    UnreadRow,
    UnreadSummary,
)
from infrastructure.sql_views import AsyncReadPool, Cursor, Dialect, TrackedView

CONVERSATIONS_TABLE = "readseq_unread_conversations"
TOTALS_TABLE = "readseq_unread_totals"

# Create the per-conversation rows; seqs fit a signed 64-bit integer.
CREATE_CONVERSATIONS = (
    "CREATE TABLE IF NOT EXISTS {conversations} ("
    "aggregate_id {id_type} PRIMARY KEY, owner_id TEXT NOT NULL, "
    "conversation_id TEXT NOT NULL, kind TEXT NOT NULL, max_seq BIGINT NOT NULL, "
    "has_read_seq BIGINT NOT NULL, unread_count BIGINT NOT NULL, "
    "updated_at {time_type} NOT NULL)"
)
# Index the per-owner listing, which pages by conversation ID.
CREATE_OWNER_INDEX = (
    "CREATE UNIQUE INDEX IF NOT EXISTS {index} "
    "ON {conversations} (owner_id, conversation_id)"
)
# Create the per-owner totals.
CREATE_TOTALS = (
    "CREATE TABLE IF NOT EXISTS {totals} (owner_id TEXT PRIMARY KEY, "
    "total_unread BIGINT NOT NULL, conversations_with_unread BIGINT NOT NULL, "
    "updated_at {time_type} NOT NULL)"
)
# Load the rows that a batch of events changes.
SELECT_ROWS = (
    "SELECT aggregate_id, owner_id, conversation_id, kind, max_seq, has_read_seq, "
    "unread_count, updated_at FROM {conversations} WHERE aggregate_id {id_filter}"
)
# Insert or replace one conversation row.
UPSERT_ROW = (
    "INSERT INTO {conversations} (aggregate_id, owner_id, conversation_id, kind, "
    "max_seq, has_read_seq, unread_count, updated_at) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}) "
    "ON CONFLICT (aggregate_id) DO UPDATE SET max_seq = excluded.max_seq, "
    "has_read_seq = excluded.has_read_seq, unread_count = excluded.unread_count, "
    "updated_at = excluded.updated_at"
)
# Add one batch's change to an owner's totals.
ADD_TO_TOTALS = (
    "INSERT INTO {totals} AS t "
    "(owner_id, total_unread, conversations_with_unread, updated_at) "
    "VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (owner_id) DO UPDATE SET "
    "total_unread = t.total_unread + excluded.total_unread, "
    "conversations_with_unread = "
    "t.conversations_with_unread + excluded.conversations_with_unread, "
    "updated_at = excluded.updated_at"
)
# Read one owner's totals.
SELECT_TOTALS = (
    "SELECT total_unread, conversations_with_unread FROM {totals} WHERE owner_id = {p}"
)
# Page through an owner's conversations by conversation ID.
SELECT_PAGE = (
    "SELECT conversation_id, kind, max_seq, has_read_seq, unread_count, updated_at "
    "FROM {conversations} WHERE owner_id = {p} AND conversation_id > {p} "
    "AND unread_count >= {p} ORDER BY conversation_id LIMIT {p}"
)
# Count owners, conversations and unread messages over the whole read model.
SELECT_SUMMARY = (
    "SELECT (SELECT COUNT(*) FROM {totals}) AS owners, "
    "(SELECT COUNT(*) FROM {conversations}) AS conversations, "
    "(SELECT COALESCE(SUM(total_unread), 0) FROM {totals}) AS total_unread"
)
# Read position, totals and one page in one statement, so PostgreSQL answers
# from one snapshot in one round trip, without an explicit transaction.
SELECT_PAGE_WITH_TOTALS = (
    "SELECT p.position, t.total_unread, t.conversations_with_unread, "
    "c.conversation_id, c.kind, c.max_seq, c.has_read_seq, c.unread_count, "
    "c.updated_at FROM (SELECT position FROM {positions} WHERE name = {p}) AS p "
    "LEFT JOIN {totals} AS t ON t.owner_id = {p} "
    "LEFT JOIN LATERAL (SELECT conversation_id, kind, max_seq, has_read_seq, "
    "unread_count, updated_at FROM {conversations} WHERE owner_id = {p} "
    "AND conversation_id > {p} AND unread_count >= {p} "
    "ORDER BY conversation_id LIMIT {p}) AS c ON TRUE"
)
DELETE_CONVERSATIONS = "DELETE FROM {conversations}"
DELETE_TOTALS = "DELETE FROM {totals}"


class UnreadCountsSqlView(TrackedView):
    """Stores unread rows and totals beside the event store, in the same database."""

    def __init__(
        self,
        datastore: SQLiteDatastore | PostgresDatastore,
        async_reads: AsyncReadPool | None = None,
    ) -> None:
        super().__init__(datastore, UnreadCountsProjection.name)
        self.async_reads = async_reads or AsyncReadPool(datastore)
        tables = {"conversations": CONVERSATIONS_TABLE, "totals": TOTALS_TABLE}
        self._tables = tables
        self._upsert_row = self._sql(UPSERT_ROW, **tables)
        self._add_to_totals = self._sql(ADD_TO_TOTALS, **tables)
        self._select_totals = self._sql(SELECT_TOTALS, **tables)
        self._select_page = self._sql(SELECT_PAGE, **tables)
        self._select_summary = self._sql(SELECT_SUMMARY, **tables)
        self._select_page_with_totals = self._sql(SELECT_PAGE_WITH_TOTALS, **tables)
        self._deletes = [
            self._sql(DELETE_CONVERSATIONS, **tables),
            self._sql(DELETE_TOTALS, **tables),
        ]
        self.create_tables(self._create_statements())

    def _create_statements(self) -> list[Any]:
        if self.dialect.name == "sqlite":
            id_type, time_type = "TEXT", "TEXT"
        else:
            id_type, time_type = "UUID", "TIMESTAMPTZ"
        statements = []
        for template in (CREATE_CONVERSATIONS, CREATE_OWNER_INDEX, CREATE_TOTALS):
            filled = template.replace("{id_type}", id_type).replace(
                "{time_type}", time_type
            )
            statements.append(
                self._sql(
                    filled, index=f"{CONVERSATIONS_TABLE}_owner_idx", **self._tables
                )
            )
        return statements

    @contextmanager
    def transaction(
        self, expected_position: int, new_position: int
    ) -> Iterator[_UnreadCountsTransaction]:
        """Open a transaction that moves the position from expected to new first."""
        with self.tracked_transaction(expected_position, new_position) as cursor:
            yield _UnreadCountsTransaction(self, cursor)

    def reset(self) -> None:
        """Delete all rows and totals and set the position to 0, atomically."""
        self.reset_with(self._deletes)

    def snapshot(
        self, owner_id: str, *, after: str | None, limit: int, include_read: bool
    ) -> tuple[UnreadTotals, list[UnreadConversation], int]:
        """Read totals, a page of rows by conversation ID and the position at once."""
        minimum_unread = 0 if include_read else 1
        if isinstance(self.datastore, PostgresDatastore):
            return self._snapshot_in_one_statement(
                owner_id, after or "", limit, minimum_unread
            )
        with self.snapshot_transaction() as cursor:
            cursor.execute(self._select_totals, (owner_id,))
            totals_row = cursor.fetchone()
            cursor.execute(
                self._select_page, (owner_id, after or "", minimum_unread, limit)
            )
            rows = cursor.fetchall()
            cursor.execute(self._select_position, (self.projection_name,))
            position_row = cursor.fetchone()

        totals = UnreadTotals(owner_id, 0, 0)
        if totals_row is not None:
            totals = UnreadTotals(
                owner_id,
                int(totals_row["total_unread"]),
                int(totals_row["conversations_with_unread"]),
            )
        conversations = [
            UnreadConversation(
                conversation_id=row["conversation_id"],
                kind=row["kind"],
                max_seq=int(row["max_seq"]),
                has_read_seq=int(row["has_read_seq"]),
                unread_count=int(row["unread_count"]),
                updated_at=self.dialect.time_value(row["updated_at"]),
            )
            for row in rows
        ]
        position = int(position_row["position"]) if position_row is not None else 0
        return totals, conversations, position

    def _snapshot_in_one_statement(
        self, owner_id: str, after: str, limit: int, minimum_unread: int
    ) -> tuple[UnreadTotals, list[UnreadConversation], int]:
        assert isinstance(self.datastore, PostgresDatastore)
        params = self._page_params(owner_id, after, limit, minimum_unread)
        with self.datastore.get_connection() as conn, conn.cursor() as cursor:
            cursor.execute(self._select_page_with_totals, params, prepare=True)
            rows = cursor.fetchall()
        return _page_from_rows(owner_id, rows)

    async def snapshot_async(
        self, owner_id: str, *, after: str | None, limit: int, include_read: bool
    ) -> tuple[UnreadTotals, list[UnreadConversation], int]:
        """Read like `snapshot`, without holding a thread while PostgreSQL works."""
        if not isinstance(self.datastore, PostgresDatastore):
            return await anyio.to_thread.run_sync(
                partial(
                    self.snapshot,
                    owner_id,
                    after=after,
                    limit=limit,
                    include_read=include_read,
                )
            )
        params = self._page_params(
            owner_id, after or "", limit, 0 if include_read else 1
        )
        rows = await self.async_reads.fetch_all(self._select_page_with_totals, params)
        return _page_from_rows(owner_id, rows)

    def _page_params(
        self, owner_id: str, after: str, limit: int, minimum_unread: int
    ) -> tuple[str, str, str, str, int, int]:
        return (self.projection_name, owner_id, owner_id, after, minimum_unread, limit)

    def summary(self) -> UnreadSummary:
        """Return counts over all owners."""
        with self.snapshot_transaction() as cursor:
            cursor.execute(self._select_summary)
            row = cursor.fetchone()
        return UnreadSummary(
            owners=int(row["owners"]),
            conversations=int(row["conversations"]),
            total_unread=int(row["total_unread"]),
        )


def _page_from_rows(
    owner_id: str, rows: Sequence[Any]
) -> tuple[UnreadTotals, list[UnreadConversation], int]:
    if not rows:
        return UnreadTotals(owner_id, 0, 0), [], 0
    first = rows[0]
    totals = UnreadTotals(
        owner_id,
        int(first["total_unread"] or 0),
        int(first["conversations_with_unread"] or 0),
    )
    conversations = [
        UnreadConversation(
            conversation_id=row["conversation_id"],
            kind=row["kind"],
            max_seq=int(row["max_seq"]),
            has_read_seq=int(row["has_read_seq"]),
            unread_count=int(row["unread_count"]),
            updated_at=row["updated_at"],
        )
        for row in rows
        if row["conversation_id"] is not None
    ]
    return totals, conversations, int(first["position"])


class _UnreadCountsTransaction:
    def __init__(self, view: UnreadCountsSqlView, cursor: Cursor) -> None:
        self.view = view
        self.dialect: Dialect = view.dialect
        self.cursor = cursor

    def load_rows(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, UnreadRow]:
        if not aggregate_ids:
            return {}
        rows = self.dialect.fetch_by_ids(
            self.cursor, SELECT_ROWS, aggregate_ids, **self.view._tables
        )
        loaded = [
            UnreadRow(
                aggregate_id=self.dialect.id_value(row["aggregate_id"]),
                owner_id=row["owner_id"],
                conversation_id=row["conversation_id"],
                kind=row["kind"],
                max_seq=int(row["max_seq"]),
                has_read_seq=int(row["has_read_seq"]),
                unread_count=int(row["unread_count"]),
                updated_at=self.dialect.time_value(row["updated_at"]),
            )
            for row in rows
        ]
        return {row.aggregate_id: row for row in loaded}

    def save_rows(self, rows: Sequence[UnreadRow]) -> None:
        if not rows:
            return
        self.cursor.executemany(
            self.view._upsert_row,
            [
                (
                    self.dialect.id_param(row.aggregate_id),
                    row.owner_id,
                    row.conversation_id,
                    row.kind,
                    row.max_seq,
                    row.has_read_seq,
                    row.unread_count,
                    self.dialect.time_param(row.updated_at),
                )
                for row in rows
            ],
        )

    def add_to_totals(self, deltas: Sequence[TotalsDelta]) -> None:
        if not deltas:
            return
        self.cursor.executemany(
            self.view._add_to_totals,
            [
                (
                    delta.owner_id,
                    delta.unread,
                    delta.conversations_with_unread,
                    self.dialect.time_param(delta.updated_at),
                )
                for delta in deltas
            ],
        )
