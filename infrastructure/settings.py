"""Service settings, read from `READSEQ_*` environment variables."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///readseq.db"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """Every setting of the service; each field reads `READSEQ_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="READSEQ_", extra="ignore")

    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description=(
            "Event store and read models: sqlite:///PATH (relative to the working "
            "directory; sqlite:////abs/path for an absolute path) or "
            "postgresql://USER:PASSWORD@HOST:PORT/DBNAME?schema=NAME"
        ),
    )
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port of the HTTP server.")
    run_projections: bool = Field(
        True,
        description=(
            "Run the projections in background threads of the serving process; "
            "turn off when `readseq projections run` runs them elsewhere."
        ),
    )
    max_wait_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Longest time a query waits for min_position, in seconds.",
    )
    stream_heartbeat_seconds: float = Field(
        15.0,
        gt=0,
        le=300,
        description=(
            "Seconds between comment lines on an idle receipt stream, which keep "
            "proxies from closing it and detect clients that went away."
        ),
    )
    projection_batch_size: int = Field(
        500, ge=1, le=10_000, description="Events per projection transaction."
    )
    snapshot_interval: int = Field(
        100, ge=2, description="Events between snapshots of one conversation."
    )
    group_commit: bool = Field(
        True,
        description=(
            "Save the events of concurrent commands in shared transactions; "
            "a lone command is saved at once."
        ),
    )
    aggregate_cache_size: int = Field(
        5000,
        ge=0,
        description=(
            "Conversations kept in memory between commands (0 turns the cache "
            "off); ones with over 1,000 unread messages are never kept."
        ),
    )
    db_pool_size: int = Field(
        5, ge=1, description="PostgreSQL connections kept open per process."
    )
    db_max_overflow: int = Field(
        35, ge=0, description="Extra PostgreSQL connections opened under load."
    )
    log_level: str = Field("INFO", description="Level of the standard logging module.")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            msg = f"unknown log level {value!r}: use one of {', '.join(LOG_LEVELS)}"
            raise ValueError(msg)
        return level

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        parse_database_url(value)
        return value

    @property
    def database(self) -> DatabaseConfig:
        """Return the parsed database URL."""
        return parse_database_url(self.database_url)


@lru_cache
def get_settings() -> Settings:
    """Read the settings from the environment once per process."""
    return Settings()


@dataclass(frozen=True)
class DatabaseConfig:
    """Parsed database URL; the password is kept out of `repr`."""

    backend: Literal["sqlite", "postgresql"]
    sqlite_path: str = ""
    dbname: str = ""
    host: str = ""
    port: int = 5432
    user: str = ""
    password: str = ""
    schema: str = "public"

    def __repr__(self) -> str:
        return f"DatabaseConfig({self.display_name()})"

    def display_name(self) -> str:
        """Describe the database for logs, without the password."""
        if self.backend == "sqlite":
            return f"sqlite file {self.sqlite_path}"
        return (
            f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"
            f" schema {self.schema}"
        )


def parse_database_url(url: str) -> DatabaseConfig:
    """Parse `sqlite:///PATH` or `postgresql://...`; raise ValueError naming the fix."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        if parts.netloc:
            msg = (
                f"invalid SQLite URL {url!r}: use three slashes for a relative path "
                "(sqlite:///readseq.db) or four for an absolute one "
                "(sqlite:////var/lib/readseq.db)"
            )
            raise ValueError(msg)
        path = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
        if not path:
            msg = f"invalid SQLite URL {url!r}: add a file path, as in sqlite:///readseq.db"
            raise ValueError(msg)
        return DatabaseConfig(backend="sqlite", sqlite_path=path)

    if scheme in ("postgresql", "postgres"):
        dbname = unquote(parts.path.lstrip("/"))
        if not dbname:
            msg = (
                f"invalid PostgreSQL URL {_without_password(url)!r}: add the database "
                "name, as in postgresql://user@127.0.0.1:5432/readseq"
            )
            raise ValueError(msg)
        query = parse_qs(parts.query)
        schema = query.get("schema", ["public"])[0]
        try:
            port = parts.port or 5432
        except ValueError:
            msg = f"invalid port in PostgreSQL URL {_without_password(url)!r}"
            raise ValueError(msg) from None
        return DatabaseConfig(
            backend="postgresql",
            dbname=dbname,
            host=unquote(parts.hostname or ""),
            port=port,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
            schema=schema,
        )

    msg = (
        f"unsupported database URL {_without_password(url)!r}: use sqlite:///PATH "
        "or postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
    )
    raise ValueError(msg)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
