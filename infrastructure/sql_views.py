"""SQL plumbing shared by the read-model views on SQLite and PostgreSQL.

Statements are written once with `{name}` slots for table names and `{p}` for
parameters. Each dialect fills them in: plain names and `?` for SQLite,
schema-qualified identifiers and `%s` for PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from psycopg import AsyncConnection, sql
from psycopg.pq import TransactionStatus
from psycopg.rows import DictRow, dict_row

from application.projections import ProjectionPositionMovedError

POSITIONS_TABLE = "readseq_projection_positions"

# Create the table of tracking positions, one row per projection.
CREATE_POSITIONS = (
    "CREATE TABLE IF NOT EXISTS {positions} "
    "(name TEXT PRIMARY KEY, position BIGINT NOT NULL)"
)
# Add a projection's row at position 0 unless it exists.
INSERT_POSITION = (
    "INSERT INTO {positions} (name, position) VALUES ({p}, 0) "
    "ON CONFLICT (name) DO NOTHING"
)
# Read a projection's position.
SELECT_POSITION = "SELECT position FROM {positions} WHERE name = {p}"
# Move a position only if no other worker moved it (compare and set).
MOVE_POSITION = (
    "UPDATE {positions} SET position = {p} WHERE name = {p} AND position = {p} "
    "RETURNING position"
)
# Set a projection's position back to 0, for a rebuild.
RESET_POSITION = "UPDATE {positions} SET position = 0 WHERE name = {p}"


class Cursor(Protocol):
    """The part of a DB-API cursor that the views use."""

    def execute(self, statement: Any, params: Any = ...) -> Any: ...
    def executemany(self, statement: Any, params: Any) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> Any: ...


class Dialect:
    """Spelling of parameters, names, IDs and times in one database."""

    name: str

    def statement(self, template: str, **tables: str) -> Any:
        """Fill a statement template's table and parameter slots."""
        raise NotImplementedError

    def id_param(self, aggregate_id: UUID) -> Any:
        """Convert an aggregate ID for a query parameter."""
        raise NotImplementedError

    def id_value(self, value: Any) -> UUID:
        """Convert a stored aggregate ID back to a UUID."""
        raise NotImplementedError

    def time_param(self, value: datetime) -> Any:
        """Convert an aware datetime for a query parameter."""
        raise NotImplementedError

    def time_value(self, value: Any) -> datetime:
        """Convert a stored time back to an aware datetime."""
        raise NotImplementedError

    def fetch_by_ids(
        self, cursor: Cursor, template: str, ids: Sequence[UUID], **tables: str
    ) -> list[Any]:
        """Run a query whose `{id_filter}` slot follows the ID column, for many IDs."""
        raise NotImplementedError


class SqliteDialect(Dialect):
    """SQLite: `?` parameters, IDs as hex text, times as ISO-8601 text."""

    name = "sqlite"
    # SQLite before 3.32 allows at most 999 parameters in one statement.
    max_params = 900

    def __init__(self, datastore: SQLiteDatastore) -> None:
        self.datastore = datastore

    def statement(self, template: str, **tables: str) -> str:
        return template.format(p="?", **tables)

    def id_param(self, aggregate_id: UUID) -> str:
        return aggregate_id.hex

    def id_value(self, value: Any) -> UUID:
        return UUID(value)

    def time_param(self, value: datetime) -> str:
        return value.isoformat()

    def time_value(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def fetch_by_ids(
        self, cursor: Cursor, template: str, ids: Sequence[UUID], **tables: str
    ) -> list[Any]:
        rows: list[Any] = []
        for start in range(0, len(ids), self.max_params):
            chunk = ids[start : start + self.max_params]
            id_filter = f"IN ({', '.join('?' * len(chunk))})"
            statement = template.replace("{id_filter}", id_filter).format(**tables)
            cursor.execute(statement, [aggregate_id.hex for aggregate_id in chunk])
            rows.extend(cursor.fetchall())
        return rows


class PostgresDialect(Dialect):
    """PostgreSQL: `%s` parameters, schema-qualified names, native uuid and time."""

    name = "postgresql"

    def __init__(self, datastore: PostgresDatastore) -> None:
        self.datastore = datastore
        self.schema = datastore.schema

    def statement(self, template: str, **tables: str) -> sql.Composed:
        return sql.SQL(template).format(
            p=sql.Placeholder(),
            **{slot: self._identifier(slot, table) for slot, table in tables.items()},
        )

    def _identifier(self, slot: str, name: str) -> sql.Identifier:
        # An index always lives in its table's schema and takes no qualifier.
        if slot.endswith("index"):
            return sql.Identifier(name)
        return sql.Identifier(self.schema, name)

    def id_param(self, aggregate_id: UUID) -> UUID:
        return aggregate_id

    def id_value(self, value: Any) -> UUID:
        return value if isinstance(value, UUID) else UUID(str(value))

    def time_param(self, value: datetime) -> datetime:
        return value

    def time_value(self, value: Any) -> datetime:
        assert isinstance(value, datetime)
        return value

    def fetch_by_ids(
        self, cursor: Cursor, template: str, ids: Sequence[UUID], **tables: str
    ) -> list[Any]:
        statement = self.statement(
            template.replace("{id_filter}", "= ANY({p})"), **tables
        )
        cursor.execute(statement, (list(ids),))
        return list(cursor.fetchall())


def dialect_for(datastore: object) -> Dialect:
    """Return the dialect of the library datastore the application uses."""
    if isinstance(datastore, SQLiteDatastore):
        return SqliteDialect(datastore)
    if isinstance(datastore, PostgresDatastore):
        return PostgresDialect(datastore)
    msg = f"read models need SQLite or PostgreSQL, not {type(datastore).__name__}"
    raise TypeError(msg)


IDLE = TransactionStatus.IDLE


class AsyncReadPool:
    """Async PostgreSQL connections for queries that the event loop awaits.

    A free list with a bound on open connections: on this path a query is
    about 0.2 ms, and psycopg_pool's async checkout measured about 45 us more
    than this. Connections belong to the event loop that opened them, so
    another loop (a test's, say) gets its own.
    """

    MAX_CONNECTIONS = 8

    def __init__(self, datastore: SQLiteDatastore | PostgresDatastore) -> None:
        self.datastore = datastore
        self._idle: list[AsyncConnection[DictRow]] = []
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection[DictRow]]:
        """Lend an idle connection, or open one while fewer than the bound exist."""
        slots = self._slots_for_running_loop()
        async with slots:
            connection = self._idle.pop() if self._idle else await self._connect()
            reusable = False
            try:
                yield connection
                reusable = (
                    not connection.closed and connection.info.transaction_status == IDLE
                )
            finally:
                if reusable:
                    self._idle.append(connection)
                else:
                    await connection.close()

    async def fetch_all(self, statement: Any, params: Sequence[Any]) -> list[DictRow]:
        """Run one prepared query and return its rows.

        A connection that broke while idle (the server restarted, say) fails
        on its next query; the query is then tried once on a new connection.
        """
        for attempt in (1, 2):
            try:
                async with self.connection() as connection:
                    cursor = await connection.execute(statement, params, prepare=True)
                    return await cursor.fetchall()
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
                self._idle.clear()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """Close the idle connections."""
        while self._idle:
            await self._idle.pop().close()

    def _slots_for_running_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._idle = []
            self._slots = asyncio.Semaphore(self.MAX_CONNECTIONS)
            self._loop = loop
        return self._slots

    async def _connect(self) -> AsyncConnection[DictRow]:
        assert isinstance(self.datastore, PostgresDatastore)
        kwargs = self.datastore.pool.kwargs
        assert isinstance(kwargs, dict)
        # The library turns autocommit on in a configure callback, not in
        # these arguments; without it every read would open a transaction.
        arguments = dict(kwargs, row_factory=dict_row, autocommit=True)
        return await AsyncConnection[DictRow].connect(**arguments)


class TrackedView:
    """Base of a read model whose rows and position change in one transaction."""

    def __init__(
        self, datastore: SQLiteDatastore | PostgresDatastore, projection_name: str
    ) -> None:
        self.datastore = datastore
        self.dialect = dialect_for(datastore)
        self.projection_name = projection_name
        self._select_position = self._sql(SELECT_POSITION)
        self._move_position = self._sql(MOVE_POSITION)
        self._reset_position = self._sql(RESET_POSITION)

    def _sql(self, template: str, **tables: str) -> Any:
        return self.dialect.statement(template, positions=POSITIONS_TABLE, **tables)

    def create_tables(self, statements: Sequence[str]) -> None:
        """Create the view's tables and its position row if missing."""
        with self.datastore.transaction(commit=True) as cursor:
            cursor.execute(self._sql(CREATE_POSITIONS))
            for statement in statements:
                cursor.execute(statement)
            cursor.execute(self._sql(INSERT_POSITION), (self.projection_name,))

    def position(self) -> int:
        """Return the stored tracking position."""
        with self.datastore.transaction(commit=False) as cursor:
            cursor.execute(self._select_position, (self.projection_name,))
            row = cursor.fetchone()
        return int(row["position"]) if row is not None else 0

    @contextmanager
    def tracked_transaction(
        self, expected_position: int, new_position: int
    ) -> Iterator[Cursor]:
        """Open a transaction that moves the position first (compare and set)."""
        with self.datastore.transaction(commit=True) as cursor:
            if self.dialect.name == "postgresql":
                # Read models are rebuildable and their position commits with
                # their rows, so a crash can only lose a suffix that is then
                # replayed. Not waiting for the WAL flush frees the disk for
                # event commits.
                cursor.execute("SET LOCAL synchronous_commit = off")
            cursor.execute(
                self._move_position,
                (new_position, self.projection_name, expected_position),
            )
            if cursor.fetchone() is None:
                raise ProjectionPositionMovedError(
                    self.projection_name, expected_position
                )
            yield cursor

    @contextmanager
    def snapshot_transaction(self) -> Iterator[Cursor]:
        """Open a read-only transaction whose statements all see one snapshot."""
        with self.datastore.transaction(commit=False) as cursor:
            if self.dialect.name == "postgresql":
                # READ COMMITTED would give each statement its own snapshot.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield cursor

    def reset_with(self, statements: Sequence[Any]) -> None:
        """Run delete statements and set the position to 0 in one transaction."""
        with self.datastore.transaction(commit=True) as cursor:
            for statement in statements:
                cursor.execute(statement)
            cursor.execute(self._reset_position, (self.projection_name,))
