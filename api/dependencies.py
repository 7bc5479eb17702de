"""FastAPI dependencies and shared parameter types."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Query, Request, Response
from pydantic import BaseModel

from api.models import ProblemDetails
from infrastructure.bootstrap import Service


def get_service(request: Request) -> Service:
    """Return the service the lifespan opened for this application."""
    service = request.app.state.service
    assert isinstance(service, Service)
    return service


ServiceDep = Annotated[Service, Depends(get_service)]

UserIdPath = Annotated[
    str, Path(description="User ID: 1 to 64 letters, digits or '.-@:'.")
]
ConversationIdPath = Annotated[
    str,
    Path(
        description=(
            "Conversation ID: 1 to 128 printable ASCII characters without "
            "whitespace, '/', '?' or '#' (percent-encode '%')."
        )
    ),
]
# Log positions are signed 64-bit integers in both databases.
MAX_POSITION = 2**63 - 1

MinPosition = Annotated[
    int,
    Query(
        ge=0,
        le=MAX_POSITION,
        description=(
            "Wait until the read model has processed this log position (the "
            "`position` of a command response); 503 if it takes too long."
        ),
    ),
]


def json_response(model: BaseModel) -> Response:
    """Serialise a response model once, in pydantic-core.

    Routes return this with the model named in `response_model`, which keeps
    the OpenAPI schema and skips FastAPI validating the model a second time.
    """
    return Response(model.model_dump_json(), media_type="application/json")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Document problem responses of the given statuses in OpenAPI."""
    return {
        status: {
            "model": ProblemDetails,
            "content": {"application/problem+json": {}},
            "description": "Problem details (RFC 9457)",
        }
        for status in statuses
    }
