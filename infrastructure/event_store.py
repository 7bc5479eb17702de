"""Configuration of the eventsourcing library's SQLite and PostgreSQL recorders."""

from __future__ import annotations

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
        "POSTGRES_CONNECT_TIMEOUT": "5",
        "POSTGRES_PRE_PING": "y",
    }


def ensure_postgres_schema(database: DatabaseConfig) -> None:
    """Create the configured schema if missing; the library expects it to exist."""
    if database.backend != "postgresql" or database.schema == "public":
        return
    with psycopg.connect(conninfo(database), autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(database.schema)
            )
        )


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
