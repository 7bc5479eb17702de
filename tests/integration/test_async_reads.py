"""Async unread reads on PostgreSQL survive a connection the server closed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import anyio
import psycopg
import pytest

from domain.values import ReceivedMessage
from infrastructure.bootstrap import Service, build_service
from infrastructure.settings import Settings


@pytest.fixture
def postgres_service(database_url: str) -> Iterator[Service]:
    if not database_url.startswith("postgresql"):
        pytest.skip("the async read pool serves PostgreSQL only")
    service = build_service(Settings(database_url=database_url))
    service.start_projections()
    yield service
    service.close()


def test_read_retries_after_server_closed_connection(
    postgres_service: Service, database_url: str
) -> None:
    service = postgres_service
    position = service.app.record_messages(
        "B", "sg_x", [ReceivedMessage(1, "A", datetime.now(UTC))]
    ).position
    view = service.unread_view

    async def read_twice_with_kill_between() -> tuple[int, int]:
        _, _, first = await view.snapshot_async(
            "B", after=None, limit=10, include_read=True
        )
        (idle,) = view.async_reads._idle
        backend = idle.info.backend_pid
        base_url = database_url.split("?", maxsplit=1)[0]
        with psycopg.connect(base_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        totals, _, second = await view.snapshot_async(
            "B", after=None, limit=10, include_read=True
        )
        await view.async_reads.close()
        return first + second, totals.total_unread

    service.read_models.wait_for("unread_counts", position, 10)
    positions, unread = anyio.run(read_twice_with_kill_between)

    assert positions == 2 * position
    assert unread == 1
