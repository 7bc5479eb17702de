"""Admin routes: audit history, projection status and rebuilds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, status

from api.dependencies import (
    ConversationIdPath,
    ServiceDep,
    UserIdPath,
    problem_responses,
)
from api.models import HistoryEntryPublic, HistoryResponse, ProjectionStatusPublic
from domain.values import MAX_SEQ

router = APIRouter(prefix="/v1/admin", tags=["admin"])

DEFAULT_HISTORY_PAGE = 500
MAX_HISTORY_PAGE = 1000


@router.get(
    "/users/{user_id}/conversations/{conversation_id}/history",
    responses=problem_responses(404, 422),
)
def conversation_history(
    user_id: UserIdPath,
    conversation_id: ConversationIdPath,
    service: ServiceDep,
    after_version: Annotated[
        int,
        Query(ge=0, le=MAX_SEQ, description="Start after this version (paging)."),
    ] = 0,
    limit: Annotated[
        int, Query(ge=1, le=MAX_HISTORY_PAGE, description="Events per page.")
    ] = DEFAULT_HISTORY_PAGE,
    until_version: Annotated[
        int | None,
        Query(ge=1, le=MAX_SEQ, description="Stop after this aggregate version."),
    ] = None,
    until_time: Annotated[
        datetime | None,
        Query(description="Stop after events recorded at this time (UTC if no zone)."),
    ] = None,
) -> HistoryResponse:
    """Replay a conversation's events, with the state after each one."""
    if until_time is not None and until_time.tzinfo is None:
        until_time = until_time.replace(tzinfo=UTC)
    entries = service.app.history(
        user_id,
        conversation_id,
        after_version=after_version,
        limit=limit,
        until_version=until_version,
        until_time=until_time,
    )
    return HistoryResponse(
        user_id=user_id,
        conversation_id=conversation_id,
        entries=[HistoryEntryPublic.of(entry) for entry in entries],
        next_after_version=entries[-1].version if len(entries) == limit else None,
    )


@router.get("/projections")
def projection_status(service: ServiceDep) -> list[ProjectionStatusPublic]:
    """Return each projection's position, the log head and the lag between them."""
    return [ProjectionStatusPublic.of(s) for s in service.read_models.status()]


@router.post(
    "/projections/{name}/rebuild",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(404),
)
def rebuild_projection(name: str, service: ServiceDep) -> ProjectionStatusPublic:
    """Clear a read model and let its worker replay the log; poll the status.

    Until the replay reaches the head, queries on this read model see
    partial counts; a query with `min_position` waits as usual.
    """
    service.read_models.request_rebuild(name)
    current = [s for s in service.read_models.status() if s.name == name]
    return ProjectionStatusPublic.of(current[0])
