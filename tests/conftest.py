"""Fixtures that run storage tests on SQLite and, when configured, PostgreSQL.

Set READSEQ_TEST_DATABASE_URL (for example postgresql://postgres@127.0.0.1/test)
to run every storage test on PostgreSQL too. Each test then gets a schema of
its own, dropped afterwards. Without the variable the PostgreSQL cases skip;
with it set, an unreachable server fails them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql

from infrastructure.bootstrap import Service, build_service
from infrastructure.settings import Settings

TEST_DATABASE_URL_VARIABLE = "READSEQ_TEST_DATABASE_URL"


def postgres_test_url() -> str | None:
    """Return the PostgreSQL URL the tests may use, if any."""
    return os.environ.get(TEST_DATABASE_URL_VARIABLE) or None


def with_schema(url: str, schema: str) -> str:
    """Return the URL with its `schema` query parameter replaced."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", schema))
    return parts._replace(query=urlencode(query)).geturl()


def drop_schema(url: str, schema: str) -> None:
    """Drop a test schema and everything in it."""
    base = urlsplit(url)._replace(query="").geturl()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty event store on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'readseq.db'}"
        return
    base_url = postgres_test_url()
    if base_url is None:
        pytest.skip(f"set {TEST_DATABASE_URL_VARIABLE} to run PostgreSQL tests")
    schema = f"test_{uuid4().hex[:16]}"
    yield with_schema(base_url, schema)
    drop_schema(base_url, schema)


def make_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for tests: the given database and short waits."""
    values: dict[str, object] = {
        "database_url": database_url,
        "max_wait_seconds": 10.0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Settings of an empty event store."""
    return make_settings(database_url)


@pytest.fixture
def service(settings: Settings) -> Iterator[Service]:
    """A service with projections running in background threads."""
    opened = build_service(settings)
    opened.start_projections()
    yield opened
    opened.close()


DATA_DIR_VARIABLE = "READSEQ_DATA_DIR"
REQUIRE_DATA_VARIABLE = "READSEQ_REQUIRE_DATA"


def data_dir() -> Path | None:
    """Find the folder of public chat data sets used by the real-data tests.

    READSEQ_DATA_DIR wins; otherwise `shared/data` beside the checkout.
    """
    configured = os.environ.get(DATA_DIR_VARIABLE)
    candidates = [Path(configured)] if configured else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def data_folder() -> Path:
    """Folder of the public data sets; skips, or fails in CI, when absent."""
    folder = data_dir()
    if folder is None:
        message = (
            f"data sets not found: set {DATA_DIR_VARIABLE} to the folder that "
            "contains chitchat-dataset/ and irc-disentanglement/"
        )
        if os.environ.get(REQUIRE_DATA_VARIABLE):
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture
def chitchat_path(data_folder: Path) -> Path:
    """Path of the BYU Chit-Chat data set."""
    path = data_folder / "chitchat-dataset" / "dataset.json.gz"
    if not path.is_file():
        pytest.fail(f"Chit-Chat data set {path} not found in {data_folder}")
    return path
