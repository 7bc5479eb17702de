"""Routes that read a user's unread counts from the read model."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.dependencies import (
    MinPosition,
    ServiceDep,
    UserIdPath,
    json_response,
    problem_responses,
)
from api.models import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    UnreadConversationPublic,
    UnreadListResponse,
)
from domain.values import CONVERSATION_ID_PATTERN

router = APIRouter(prefix="/v1", tags=["users"])


@router.get(
    "/users/{user_id}/unread",
    response_model=UnreadListResponse,
    responses=problem_responses(422, 503),
)
async def list_unread(
    user_id: UserIdPath,
    service: ServiceDep,
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description="Conversations per page.")
    ] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None,
        Query(
            pattern=f"^{CONVERSATION_ID_PATTERN.pattern}$",
            description="`next_cursor` of the previous page.",
        ),
    ] = None,
    include_read: Annotated[
        bool, Query(description="Also list conversations with no unread message.")
    ] = False,
    min_position: MinPosition = 0,
) -> Response:
    """Return the user's total unread and their conversations by conversation ID."""
    page = await service.unread.page(
        user_id,
        after=cursor,
        limit=limit,
        include_read=include_read,
        min_position=min_position,
        timeout=service.settings.max_wait_seconds,
    )
    # Every value comes typed from the read model, so none is validated again.
    return json_response(
        UnreadListResponse.model_construct(
            user_id=user_id,
            total_unread=page.totals.total_unread,
            conversations_with_unread=page.totals.conversations_with_unread,
            conversations=[
                UnreadConversationPublic.of(row) for row in page.conversations
            ],
            next_cursor=page.next_cursor,
            position=page.position,
        )
    )
