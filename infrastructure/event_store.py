"""Configuration of the eventsourcing library's SQLite and PostgreSQL recorders."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from infrastructure.settings import DatabaseConfig, Settings


def event_store_env(settings: Settings) -> dict[str, str]:
    """Build the library environment that selects and configures the event store."""
    database = settings.database
    if database.backend == "sqlite":
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": database.sqlite_path,
            # Seconds a writer waits for SQLite's file lock before failing.
            "SQLITE_LOCK_TIMEOUT": "10",
        }
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": database.dbname,
        "POSTGRES_HOST": database.host,
        "POSTGRES_PORT": str(database.port),
        "POSTGRES_USER": database.user,
        "POSTGRES_PASSWORD": database.password,
        "POSTGRES_SCHEMA": database.schema,
        "POSTGRES_POOL_SIZE": str(settings.db_pool_size),
        "POSTGRES_MAX_OVERFLOW": str(settings.db_max_overflow),
        # Seconds to wait for a pooled connection. The library retries a pool
        # timeout 10 times, so a small value keeps a failing request short.
        "APPLICATION_RECORDER_TOPIC": (
            "infrastructure.pg_recorder:ColumnArrayApplicationRecorder"
        ),
        "POSTGRES_CONNECT_TIMEOUT": "5",
        # No pre-ping: it costs a round trip per checkout, and the library
        # retries statements that fail on a broken connection.
    }


class DatabaseUnavailableError(Exception):
    """The configured database cannot be opened."""


def prepare_database(database: DatabaseConfig) -> None:
    """Check that the database can be opened and create a missing schema.

    Raises `DatabaseUnavailableError` naming the database (never the
    password) and the reason, so that start-up fails with one clear line.
    """
    if database.backend == "sqlite":
        _check_sqlite_path(database.sqlite_path)
        return
    try:
        with psycopg.connect(conninfo(database), autocommit=True) as conn:
            if database.schema != "public":
                conn.execute("SELECT pg_advisory_lock(%s)", (DDL_LOCK_KEY,))
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                        sql.Identifier(database.schema)
                    )
                )
                conn.execute("SELECT pg_advisory_unlock(%s)", (DDL_LOCK_KEY,))
    except psycopg.Error as error:
        reason = (
            str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        )
        msg = (
            f"cannot open {database.display_name()}: {reason}; check "
            "READSEQ_DATABASE_URL and that PostgreSQL is running"
        )
        raise DatabaseUnavailableError(msg) from error


# Key of the PostgreSQL advisory lock held while a process creates tables.
DDL_LOCK_KEY = 0x7265616473657121


@contextmanager
def ddl_lock(database: DatabaseConfig) -> Iterator[None]:
    """Serialise table creation across processes that start at the same time.

    Two concurrent `CREATE ... IF NOT EXISTS` of one object can fail with a
    unique violation in PostgreSQL, so processes create their tables one at
    a time. SQLite serialises writers by itself.
    """
    if database.backend != "postgresql":
        yield
        return
    try:
        connection = psycopg.connect(conninfo(database), autocommit=True)
    except psycopg.Error as error:
        msg = f"cannot open {database.display_name()}: {error}"
        raise DatabaseUnavailableError(msg) from error
    with connection:
        connection.execute("SELECT pg_advisory_lock(%s)", (DDL_LOCK_KEY,))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (DDL_LOCK_KEY,))


def _check_sqlite_path(path_text: str) -> None:
    if path_text.startswith("file:") or ":memory:" in path_text:
        return
    path = Path(path_text)
    if path.is_dir():
        msg = f"SQLite database path {path} is a directory: name a file in it"
        raise DatabaseUnavailableError(msg)
    if not path.parent.is_dir():
        msg = (
            f"folder {path.parent} of SQLite database {path} does not exist: create it"
        )
        raise DatabaseUnavailableError(msg)


def conninfo(database: DatabaseConfig) -> str:
    """Return the libpq connection string of a PostgreSQL configuration."""
    return make_conninfo(
        dbname=database.dbname,
        host=database.host,
        port=database.port,
        user=database.user,
        password=database.password,
        connect_timeout=10,
    )
