"""Plain CRUD read-state service, the baseline readseq is measured against.

One row per (user, conversation) with `max_seq`, `has_read_seq` and
`unread_count`; a mark-read is one `UPDATE ... GREATEST(...)` and an unread
read is one `SELECT`. It serves the same two routes as readseq, so the same
load generator drives both. Start it with uvicorn's factory mode:

    BASELINE_DATABASE_URL=postgresql://... uvicorn --factory \
        benchmarks.crud_baseline:create_app --port 8001
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from psycopg import Connection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool
from pydantic import BaseModel

# Create the baseline table in the schema named by the `search_path` option.
CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS conversations (user_id TEXT NOT NULL, "
    "conversation_id TEXT NOT NULL, max_seq BIGINT NOT NULL, "
    "has_read_seq BIGINT NOT NULL, unread_count BIGINT NOT NULL, "
    "PRIMARY KEY (user_id, conversation_id))"
)
# Move the read position forward and recompute the unread count.
MARK_READ = (
    "UPDATE conversations SET has_read_seq = GREATEST(has_read_seq, %s), "
    "unread_count = max_seq - GREATEST(has_read_seq, %s) "
    "WHERE user_id = %s AND conversation_id = %s "
    "RETURNING has_read_seq, unread_count"
)
# Read one user's conversations; the total is summed from them.
SELECT_UNREAD = (
    "SELECT conversation_id, max_seq, has_read_seq, unread_count "
    "FROM conversations WHERE user_id = %s ORDER BY conversation_id LIMIT 100"
)


class HasReadSeqRequest(BaseModel):
    """New read position."""

    has_read_seq: int


def create_app() -> FastAPI:
    """Build the baseline app on the database in BASELINE_DATABASE_URL."""
    url = os.environ["BASELINE_DATABASE_URL"]
    pool = ConnectionPool(
        url,
        connection_class=Connection[DictRow],
        min_size=5,
        max_size=40,
        open=False,
        kwargs={"row_factory": dict_row},
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool.open(wait=True)
        with pool.connection() as conn:
            conn.execute(CREATE_TABLE)
        yield
        pool.close()

    app = FastAPI(title="crud baseline", lifespan=lifespan)

    @app.put("/v1/users/{user_id}/conversations/{conversation_id}/has-read-seq")
    def mark_read(
        user_id: str, conversation_id: str, body: HasReadSeqRequest
    ) -> dict[str, Any]:
        with pool.connection() as conn:
            row = conn.execute(
                MARK_READ,
                (body.has_read_seq, body.has_read_seq, user_id, conversation_id),
            ).fetchone()
        if row is None:
            raise HTTPException(404, "conversation not found")
        return {
            "has_read_seq": row["has_read_seq"],
            "unread_count": row["unread_count"],
        }

    @app.get("/v1/users/{user_id}/unread")
    def unread(user_id: str) -> dict[str, Any]:
        with pool.connection() as conn:
            rows = conn.execute(SELECT_UNREAD, (user_id,)).fetchall()
        return {
            "user_id": user_id,
            "total_unread": sum(row["unread_count"] for row in rows),
            "conversations": rows,
        }

    return app
