"""Receipt feed and group read-receipt tables on SQLite or PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from application.receipts import (
    GroupMessage,
    GroupReader,
    Receipt,
    ReceiptConversation,
    ReceiptsProjection,
)
from infrastructure.sql_views import Cursor, TrackedView

TABLES = {
    "conversations": "readseq_receipt_conversations",
    "messages": "readseq_group_messages",
    "readers": "readseq_group_readers",
    "feed": "readseq_receipt_feed",
}

# Create the start facts of each aggregate, which later events do not repeat.
CREATE_CONVERSATIONS = (
    "CREATE TABLE IF NOT EXISTS {conversations} ("
    "aggregate_id {id_type} PRIMARY KEY, owner_id TEXT NOT NULL, "
    "conversation_id TEXT NOT NULL, kind TEXT NOT NULL, peer_user_id TEXT, "
    "min_seq BIGINT NOT NULL)"
)
# Index the members of a conversation, for "not read by".
CREATE_MEMBERS_INDEX = (
    "CREATE INDEX IF NOT EXISTS {members_index} "
    "ON {conversations} (conversation_id, owner_id)"
)
# Create one row per group message with its sender and read count.
CREATE_MESSAGES = (
    "CREATE TABLE IF NOT EXISTS {messages} (conversation_id TEXT NOT NULL, "
    "seq BIGINT NOT NULL, sender_id TEXT NOT NULL, read_count BIGINT NOT NULL, "
    "PRIMARY KEY (conversation_id, seq))"
)
# Create one row per reader of a group message.
CREATE_READERS = (
    "CREATE TABLE IF NOT EXISTS {readers} (conversation_id TEXT NOT NULL, "
    "seq BIGINT NOT NULL, reader_id TEXT NOT NULL, read_at {time_type} NOT NULL, "
    "PRIMARY KEY (conversation_id, seq, reader_id))"
)
# Create the feed: one notification per recipient and causing event.
CREATE_FEED = (
    "CREATE TABLE IF NOT EXISTS {feed} (recipient_id TEXT NOT NULL, "
    "position BIGINT NOT NULL, notification_id {id_type} NOT NULL, "
    "kind TEXT NOT NULL, conversation_id TEXT NOT NULL, reader_id TEXT NOT NULL, "
    "created_at {time_type} NOT NULL, payload TEXT NOT NULL, "
    "PRIMARY KEY (recipient_id, position))"
)

SELECT_CONVERSATIONS = (
    "SELECT aggregate_id, owner_id, conversation_id, kind, peer_user_id, min_seq "
    "FROM {conversations} WHERE aggregate_id {id_filter}"
)
INSERT_CONVERSATION = (
    "INSERT INTO {conversations} (aggregate_id, owner_id, conversation_id, kind, "
    "peer_user_id, min_seq) VALUES ({p}, {p}, {p}, {p}, {p}, {p}) "
    "ON CONFLICT (aggregate_id) DO NOTHING"
)
INSERT_MESSAGE = (
    "INSERT INTO {messages} (conversation_id, seq, sender_id, read_count) "
    "VALUES ({p}, {p}, {p}, 0) ON CONFLICT (conversation_id, seq) DO NOTHING"
)
# Load the messages a batch of reads may touch.
SELECT_MESSAGE_RANGE = (
    "SELECT conversation_id, seq, sender_id, read_count FROM {messages} "
    "WHERE conversation_id = {p} AND seq BETWEEN {p} AND {p}"
)
UPDATE_READ_COUNT = (
    "UPDATE {messages} SET read_count = {p} WHERE conversation_id = {p} AND seq = {p}"
)
INSERT_READER = (
    "INSERT INTO {readers} (conversation_id, seq, reader_id, read_at) "
    "VALUES ({p}, {p}, {p}, {p}) ON CONFLICT (conversation_id, seq, reader_id) "
    "DO NOTHING"
)
INSERT_RECEIPT = (
    "INSERT INTO {feed} (recipient_id, position, notification_id, kind, "
    "conversation_id, reader_id, created_at, payload) "
    "VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
# Page through one recipient's feed by position.
SELECT_FEED = (
    "SELECT recipient_id, position, notification_id, kind, conversation_id, "
    "reader_id, created_at, payload FROM {feed} WHERE recipient_id = {p} "
    "AND position > {p} ORDER BY position LIMIT {p}"
)
SELECT_MESSAGE = (
    "SELECT conversation_id, seq, sender_id, read_count FROM {messages} "
    "WHERE conversation_id = {p} AND seq = {p}"
)
# Page through one message's readers by user ID.
SELECT_READERS = (
    "SELECT conversation_id, seq, reader_id, read_at FROM {readers} "
    "WHERE conversation_id = {p} AND seq = {p} AND reader_id > {p} "
    "ORDER BY reader_id LIMIT {p}"
)
# Members who could see a message (min_seq at or below it), did not send it
# and have not read it, by user ID.
SELECT_NOT_READ_BY = (
    "SELECT c.owner_id FROM {conversations} c WHERE c.conversation_id = {p} "
    "AND c.kind = 'group' AND c.min_seq <= {p} AND c.owner_id <> {p} "
    "AND c.owner_id > {p} AND NOT EXISTS (SELECT 1 FROM {readers} r "
    "WHERE r.conversation_id = c.conversation_id AND r.seq = {p} "
    "AND r.reader_id = c.owner_id) ORDER BY c.owner_id LIMIT {p}"
)
# Whole tables in a fixed order, for checksums.
SELECT_ALL = {
    "feed": (
        "SELECT recipient_id, position, notification_id, kind, conversation_id, "
        "reader_id, created_at, payload FROM {feed} ORDER BY recipient_id, position"
    ),
    "messages": (
        "SELECT conversation_id, seq, sender_id, read_count FROM {messages} "
        "ORDER BY conversation_id, seq"
    ),
    "readers": (
        "SELECT conversation_id, seq, reader_id, read_at FROM {readers} "
        "ORDER BY conversation_id, seq, reader_id"
    ),
}


class ReceiptsSqlView(TrackedView):
    """Stores the feed and group read receipts beside the event store."""

    def __init__(self, datastore: SQLiteDatastore | PostgresDatastore) -> None:
        super().__init__(datastore, ReceiptsProjection.name)
        self._statements = {
            name: self._sql(template, **TABLES)
            for name, template in {
                "insert_conversation": INSERT_CONVERSATION,
                "insert_message": INSERT_MESSAGE,
                "select_message_range": SELECT_MESSAGE_RANGE,
                "update_read_count": UPDATE_READ_COUNT,
                "insert_reader": INSERT_READER,
                "insert_receipt": INSERT_RECEIPT,
                "select_feed": SELECT_FEED,
                "select_message": SELECT_MESSAGE,
                "select_readers": SELECT_READERS,
                "select_not_read_by": SELECT_NOT_READ_BY,
            }.items()
        }
        self._select_all = {
            name: self._sql(template, **TABLES) for name, template in SELECT_ALL.items()
        }
        self._deletes = [
            self._sql(template, **TABLES)
            for template in (
                "DELETE FROM {conversations}",
                "DELETE FROM {messages}",
                "DELETE FROM {readers}",
                "DELETE FROM {feed}",
            )
        ]
        self.create_tables(self._create_statements())

    def _create_statements(self) -> list[Any]:
        if self.dialect.name == "sqlite":
            id_type, time_type = "TEXT", "TEXT"
        else:
            id_type, time_type = "UUID", "TIMESTAMPTZ"
        templates = (
            CREATE_CONVERSATIONS,
            CREATE_MEMBERS_INDEX,
            CREATE_MESSAGES,
            CREATE_READERS,
            CREATE_FEED,
        )
        return [
            self._sql(
                template.replace("{id_type}", id_type).replace(
                    "{time_type}", time_type
                ),
                members_index=TABLES["conversations"] + "_members_idx",
                **TABLES,
            )
            for template in templates
        ]

    @contextmanager
    def transaction(
        self, expected_position: int, new_position: int
    ) -> Iterator[_ReceiptsTransaction]:
        """Open a transaction that moves the position from expected to new first."""
        with self.tracked_transaction(expected_position, new_position) as cursor:
            yield _ReceiptsTransaction(self, cursor)

    def reset(self) -> None:
        """Delete all rows and set the position to 0, atomically."""
        self.reset_with(self._deletes)

    def feed(
        self, recipient_id: str, *, after: int, limit: int
    ) -> tuple[list[Receipt], int]:
        """Return notifications after a feed position, and the stored position."""
        with self.snapshot_transaction() as cursor:
            cursor.execute(
                self._statements["select_feed"], (recipient_id, after, limit)
            )
            rows = cursor.fetchall()
            cursor.execute(self._select_position, (self.projection_name,))
            position_row = cursor.fetchone()
        position = int(position_row["position"]) if position_row is not None else 0
        return [self._receipt(row) for row in rows], position

    def group_message(self, conversation_id: str, seq: int) -> GroupMessage | None:
        """Return one group message with its read count."""
        with self.snapshot_transaction() as cursor:
            cursor.execute(self._statements["select_message"], (conversation_id, seq))
            row = cursor.fetchone()
        return _message(row) if row is not None else None

    def readers(
        self, conversation_id: str, seq: int, *, after: str, limit: int
    ) -> list[GroupReader]:
        """Page through a message's readers, ordered by user ID."""
        with self.snapshot_transaction() as cursor:
            cursor.execute(
                self._statements["select_readers"], (conversation_id, seq, after, limit)
            )
            rows = cursor.fetchall()
        return [
            GroupReader(
                row["conversation_id"],
                int(row["seq"]),
                row["reader_id"],
                self.dialect.time_value(row["read_at"]),
            )
            for row in rows
        ]

    def not_read_by(
        self, message: GroupMessage, *, after: str, limit: int
    ) -> list[str]:
        """Page through members who could see the message and did not read it."""
        with self.snapshot_transaction() as cursor:
            cursor.execute(
                self._statements["select_not_read_by"],
                (
                    message.conversation_id,
                    message.seq,
                    message.sender_id,
                    after,
                    message.seq,
                    limit,
                ),
            )
            rows = cursor.fetchall()
        return [row["owner_id"] for row in rows]

    def checksums(self) -> dict[str, str]:
        """Return a SHA-256 digest of each table's rows in a fixed order."""
        digests = {}
        with self.snapshot_transaction() as cursor:
            for name, statement in self._select_all.items():
                cursor.execute(statement)
                digest = hashlib.sha256()
                for row in cursor.fetchall():
                    values = [_canonical(row[key]) for key in row.keys()]  # noqa: SIM118 (sqlite3.Row has no iterator of keys)
                    digest.update(json.dumps(values).encode())
                digests[name] = digest.hexdigest()
        return digests

    def _receipt(self, row: Any) -> Receipt:
        return Receipt(
            recipient_id=row["recipient_id"],
            position=int(row["position"]),
            notification_id=self.dialect.id_value(row["notification_id"]),
            kind=row["kind"],
            conversation_id=row["conversation_id"],
            reader_id=row["reader_id"],
            created_at=self.dialect.time_value(row["created_at"]),
            payload=json.loads(row["payload"]),
        )


class _ReceiptsTransaction:
    def __init__(self, view: ReceiptsSqlView, cursor: Cursor) -> None:
        self.view = view
        self.dialect = view.dialect
        self.cursor = cursor
        self.statements = view._statements

    def load_conversations(
        self, aggregate_ids: Sequence[UUID]
    ) -> dict[UUID, ReceiptConversation]:
        if not aggregate_ids:
            return {}
        rows = self.dialect.fetch_by_ids(
            self.cursor, SELECT_CONVERSATIONS, aggregate_ids, **TABLES
        )
        loaded = [
            ReceiptConversation(
                aggregate_id=self.dialect.id_value(row["aggregate_id"]),
                owner_id=row["owner_id"],
                conversation_id=row["conversation_id"],
                kind=row["kind"],
                peer_user_id=row["peer_user_id"],
                min_seq=int(row["min_seq"]),
            )
            for row in rows
        ]
        return {row.aggregate_id: row for row in loaded}

    def save_conversations(self, rows: Sequence[ReceiptConversation]) -> None:
        if rows:
            self.cursor.executemany(
                self.statements["insert_conversation"],
                [
                    (
                        self.dialect.id_param(row.aggregate_id),
                        row.owner_id,
                        row.conversation_id,
                        row.kind,
                        row.peer_user_id,
                        row.min_seq,
                    )
                    for row in rows
                ],
            )

    def add_group_messages(self, messages: Sequence[GroupMessage]) -> None:
        if messages:
            self.cursor.executemany(
                self.statements["insert_message"],
                [(m.conversation_id, m.seq, m.sender_id) for m in messages],
            )

    def load_group_messages(
        self, conversation_id: str, first_seq: int, last_seq: int
    ) -> list[GroupMessage]:
        self.cursor.execute(
            self.statements["select_message_range"],
            (conversation_id, first_seq, last_seq),
        )
        return [_message(row) for row in self.cursor.fetchall()]

    def add_readers(self, readers: Sequence[GroupReader]) -> None:
        if readers:
            self.cursor.executemany(
                self.statements["insert_reader"],
                [
                    (
                        r.conversation_id,
                        r.seq,
                        r.reader_id,
                        self.dialect.time_param(r.read_at),
                    )
                    for r in readers
                ],
            )

    def save_read_counts(self, messages: Sequence[GroupMessage]) -> None:
        if messages:
            self.cursor.executemany(
                self.statements["update_read_count"],
                [(m.read_count, m.conversation_id, m.seq) for m in messages],
            )

    def add_receipts(self, receipts: Sequence[Receipt]) -> None:
        if receipts:
            self.cursor.executemany(
                self.statements["insert_receipt"],
                [
                    (
                        r.recipient_id,
                        r.position,
                        self.dialect.id_param(r.notification_id),
                        r.kind,
                        r.conversation_id,
                        r.reader_id,
                        self.dialect.time_param(r.created_at),
                        # Sorted keys keep the stored text identical across rebuilds.
                        json.dumps(r.payload, sort_keys=True, separators=(",", ":")),
                    )
                    for r in receipts
                ],
            )


def _message(row: Any) -> GroupMessage:
    return GroupMessage(
        conversation_id=row["conversation_id"],
        seq=int(row["seq"]),
        sender_id=row["sender_id"],
        read_count=int(row["read_count"]),
    )


def _canonical(value: Any) -> Any:
    if isinstance(value, UUID):
        return value.hex
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
