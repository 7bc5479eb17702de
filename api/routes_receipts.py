"""Routes of the receipt feed, its live stream and group read receipts."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from api.dependencies import (
    MAX_POSITION,
    ConversationIdPath,
    MinPosition,
    ServiceDep,
    UserIdPath,
    problem_responses,
)
from api.models import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    FeedResponse,
    ReadersResponse,
    ReceiptPublic,
)
from application.errors import CursorBeyondLogError
from application.receipts import ReceiptsProjection
from domain.values import MAX_SEQ, USER_ID_PATTERN, check_user_id
from infrastructure.bootstrap import Service

router = APIRouter(prefix="/v1", tags=["receipts"])

# Longest wait between checks for a shutdown on an idle stream.
STREAM_CHECK_SECONDS = 1.0
STREAM_BATCH = 100

FeedCursor = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_POSITION,
        description="Return notifications after this position (cursor).",
    ),
]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Items per page.")]


@router.get("/users/{user_id}/receipts", responses=problem_responses(422, 503))
async def read_feed(
    user_id: UserIdPath,
    service: ServiceDep,
    after: FeedCursor = 0,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    min_position: MinPosition = 0,
) -> FeedResponse:
    """Return the user's receipt notifications after a cursor, oldest first."""
    page = await service.receipts.feed(
        user_id,
        after=after,
        limit=limit,
        min_position=min_position,
        timeout=service.settings.max_wait_seconds,
    )
    return FeedResponse(
        user_id=user_id,
        receipts=[ReceiptPublic.of(r) for r in page.receipts],
        next_after=page.next_after,
        position=page.position,
    )


@router.get(
    "/users/{user_id}/receipts/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": (
                "Server-sent events: `id` is the notification's position, "
                "`event` its kind and `data` the notification as JSON."
            ),
        },
        **problem_responses(422),
    },
)
async def stream_feed(
    request: Request,
    user_id: UserIdPath,
    service: ServiceDep,
    after: FeedCursor = 0,
    last_event_id: Annotated[
        str | None,
        Header(
            description=(
                "Resume after this event ID; wins over `after`. An empty value "
                "counts as absent."
            ),
            pattern=r"^\d{0,19}$",
        ),
    ] = None,
) -> StreamingResponse:
    """Follow the user's receipt feed live, resuming after `Last-Event-ID`."""
    check_user_id(user_id)
    cursor = int(last_event_id) if last_event_id else after
    head = await anyio.to_thread.run_sync(service.app.head_position)
    if cursor > min(head, MAX_POSITION):
        # A stream that starts beyond the log would skip what comes next.
        raise CursorBeyondLogError(cursor, head)
    return StreamingResponse(
        _feed_events(request, service, user_id, cursor),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _feed_events(
    request: Request, service: Service, user_id: str, cursor: int
) -> AsyncIterator[str]:
    name = ReceiptsProjection.name
    heartbeat = service.settings.stream_heartbeat_seconds
    stopping: threading.Event = request.app.state.stopping
    yield "retry: 2000\n\n"
    last_sent = time.monotonic()
    while not stopping.is_set() and not await request.is_disconnected():
        receipts, position = await anyio.to_thread.run_sync(
            partial(
                service.receipts_view.feed, user_id, after=cursor, limit=STREAM_BATCH
            )
        )
        for receipt in receipts:
            data = ReceiptPublic.of(receipt).model_dump(mode="json")
            yield (
                f"id: {receipt.position}\nevent: {receipt.kind}\n"
                f"data: {json.dumps(data, separators=(',', ':'))}\n\n"
            )
            cursor = receipt.position
            last_sent = time.monotonic()
        if len(receipts) == STREAM_BATCH:
            continue
        # Short waits let the stream notice a shutdown within a second.
        await service.read_models.wait_beyond(name, position, STREAM_CHECK_SECONDS)
        if time.monotonic() - last_sent >= heartbeat:
            yield ": heartbeat\n\n"
            last_sent = time.monotonic()


@router.get(
    "/conversations/{conversation_id}/messages/{seq}/readers",
    responses=problem_responses(404, 422, 503),
)
async def read_group_readers(
    conversation_id: ConversationIdPath,
    seq: Annotated[int, Path(ge=1, le=MAX_SEQ, description="Seq of the message.")],
    service: ServiceDep,
    limit: PageSize = DEFAULT_PAGE_SIZE,
    readers_after: Annotated[
        str,
        Query(
            pattern=f"^({USER_ID_PATTERN.pattern})?$",
            description="`next_readers_after` of the previous page.",
        ),
    ] = "",
    not_read_after: Annotated[
        str,
        Query(
            pattern=f"^({USER_ID_PATTERN.pattern})?$",
            description="`next_not_read_after` of the previous page.",
        ),
    ] = "",
    min_position: MinPosition = 0,
) -> ReadersResponse:
    """Return a group message's read count, its readers and who has not read it.

    Readers and non-readers are ordered by user ID and paged separately.
    """
    page = await service.receipts.readers(
        conversation_id,
        seq,
        readers_after=readers_after,
        not_read_after=not_read_after,
        limit=limit,
        min_position=min_position,
        timeout=service.settings.max_wait_seconds,
    )
    return ReadersResponse.of(page)
