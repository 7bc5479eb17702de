"""RFC 9457 problem responses for every error that leaves the API."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from application.errors import (
    ConcurrencyConflictError,
    ConversationNotFoundError,
    CursorBeyondLogError,
    ReadModelTimeoutError,
    UnknownProjectionError,
)
from application.receipts import GroupMessageNotFoundError
from domain.errors import (
    ClientMessageIdConflictError,
    ConversationKindContradictsIdError,
    ConversationKindMismatchError,
    ConversationKindRequiredError,
    DomainError,
    InvalidConversationIdError,
    InvalidSeqError,
    InvalidUserIdError,
    NotAMemberError,
    SeqAboveMaxSeqError,
    SeqConflictError,
    UnknownClientMessageIdError,
)

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"


@dataclass(frozen=True)
class ProblemType:
    """A documented kind of problem; `/problems/{slug}` describes it."""

    slug: str
    status: int
    title: str
    description: str

    @property
    def uri(self) -> str:
        """Relative URI of the problem type, served by this API."""
        return f"/problems/{self.slug}"


PROBLEM_TYPES = {
    p.slug: p
    for p in (
        ProblemType(
            "invalid-request",
            422,
            "Invalid request",
            "The body, path or query failed validation; `errors` lists each "
            "field with the rejected input.",
        ),
        ProblemType(
            "invalid-id",
            422,
            "Invalid ID",
            "A user or conversation ID has a length or character that is not allowed.",
        ),
        ProblemType(
            "invalid-seq", 422, "Invalid seq", "A seq is outside 1 to 2**63 - 1."
        ),
        ProblemType(
            "seq-above-max-seq",
            422,
            "Seq above max_seq",
            "A command named a seq above the highest seq the user has received; "
            "nothing was recorded. Record the message first.",
        ),
        ProblemType(
            "unknown-client-msg-id",
            422,
            "Unknown client message ID",
            "A client message ID matches no recorded message of the conversation.",
        ),
        ProblemType(
            "conversation-kind-required",
            422,
            "Conversation kind required",
            "A new conversation's ID has no si_, sg_ or sn_ prefix and the "
            "request sent no kind.",
        ),
        ProblemType(
            "conversation-kind-contradicts-id",
            422,
            "Kind contradicts conversation ID",
            "A new conversation's kind or peer differs from what its ID prefix "
            "and member names imply.",
        ),
        ProblemType(
            "seq-conflict",
            409,
            "Seq conflict",
            "A known seq arrived again with a different sender or client message ID.",
        ),
        ProblemType(
            "not-a-member",
            422,
            "Not a member",
            "The user is not one of the two users named by a single-chat ID.",
        ),
        ProblemType(
            "conversation-kind-mismatch",
            409,
            "Conversation kind mismatch",
            "The request names a kind or peer that differs from the stored one.",
        ),
        ProblemType(
            "client-msg-id-conflict",
            409,
            "Client message ID conflict",
            "One client message ID was sent for two different seqs.",
        ),
        ProblemType(
            "concurrency-conflict",
            409,
            "Concurrent changes",
            "Other writers changed the conversation during every retry; retry.",
        ),
        ProblemType(
            "conversation-not-found",
            404,
            "Conversation not found",
            "No message was ever recorded for this user in this conversation.",
        ),
        ProblemType("not-found", 404, "Not found", "No resource at this URL."),
        ProblemType(
            "group-message-not-found",
            404,
            "Group message not found",
            "No message with this seq was recorded in this group conversation.",
        ),
        ProblemType(
            "projection-not-found", 404, "Projection not found", "Unknown projection."
        ),
        ProblemType(
            "method-not-allowed",
            405,
            "Method not allowed",
            "The resource exists but does not accept this HTTP method.",
        ),
        ProblemType(
            "malformed-body",
            400,
            "Malformed request body",
            "The body is not valid JSON in UTF-8; the detail names the position.",
        ),
        ProblemType(
            "unsupported-media-type",
            415,
            "Unsupported media type",
            "Request bodies must be JSON with the content type application/json.",
        ),
        ProblemType(
            "request-too-large",
            413,
            "Request body too large",
            "The request body exceeds the documented limit.",
        ),
        ProblemType(
            "cursor-beyond-log",
            422,
            "Cursor beyond the log",
            "A Last-Event-ID or cursor names a position after the newest event.",
        ),
        ProblemType(
            "read-model-behind",
            503,
            "Read model behind",
            "The read model did not reach min_position in time; retry after "
            "Retry-After seconds.",
        ),
        ProblemType(
            "internal-error",
            500,
            "Internal error",
            "The server failed; the log has the details.",
        ),
    )
}

# Each error type with its problem slug and the extension members it adds:
# response field name -> exception attribute.
_ERROR_TYPES: list[tuple[type[Exception], str, dict[str, str]]] = [
    (InvalidUserIdError, "invalid-id", {"user_id": "user_id"}),
    (
        InvalidConversationIdError,
        "invalid-id",
        {"conversation_id": "conversation_id", "reason": "reason"},
    ),
    (InvalidSeqError, "invalid-seq", {"seq": "seq"}),
    (
        SeqAboveMaxSeqError,
        "seq-above-max-seq",
        {"seq": "seq", "max_seq": "max_seq", "conversation_id": "conversation_id"},
    ),
    (
        UnknownClientMessageIdError,
        "unknown-client-msg-id",
        {"client_msg_ids": "client_msg_ids", "conversation_id": "conversation_id"},
    ),
    (
        ConversationKindRequiredError,
        "conversation-kind-required",
        {"conversation_id": "conversation_id"},
    ),
    (
        NotAMemberError,
        "not-a-member",
        {
            "user_id": "user_id",
            "conversation_id": "conversation_id",
            "members": "members",
        },
    ),
    (
        ConversationKindContradictsIdError,
        "conversation-kind-contradicts-id",
        {
            "conversation_id": "conversation_id",
            "field": "field",
            "implied": "implied",
            "requested": "requested",
        },
    ),
    (
        SeqConflictError,
        "seq-conflict",
        {
            "seq": "seq",
            "field": "field",
            "known": "known",
            "received": "received",
            "conversation_id": "conversation_id",
        },
    ),
    (
        ConversationKindMismatchError,
        "conversation-kind-mismatch",
        {
            "conversation_id": "conversation_id",
            "field": "field",
            "stored": "stored",
            "requested": "requested",
        },
    ),
    (
        ClientMessageIdConflictError,
        "client-msg-id-conflict",
        {
            "client_msg_id": "client_msg_id",
            "seq": "seq",
            "other_seq": "other_seq",
            "conversation_id": "conversation_id",
        },
    ),
    (
        ConcurrencyConflictError,
        "concurrency-conflict",
        {
            "user_id": "owner_id",
            "conversation_id": "conversation_id",
            "attempts": "attempts",
        },
    ),
    (
        ConversationNotFoundError,
        "conversation-not-found",
        {"user_id": "owner_id", "conversation_id": "conversation_id"},
    ),
    (
        UnknownProjectionError,
        "projection-not-found",
        {"name": "name", "known": "known"},
    ),
    (
        CursorBeyondLogError,
        "cursor-beyond-log",
        {"cursor": "cursor", "head": "head"},
    ),
    (
        GroupMessageNotFoundError,
        "group-message-not-found",
        {"conversation_id": "conversation_id", "seq": "seq"},
    ),
    (
        ReadModelTimeoutError,
        "read-model-behind",
        {
            "projection": "projection",
            "min_position": "min_position",
            "position": "position",
        },
    ),
]


def problem_response(
    slug: str,
    detail: str,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> JSONResponse:
    """Build a problem response of a documented type."""
    problem = PROBLEM_TYPES[slug]
    body: dict[str, Any] = {
        "type": problem.uri,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    body.update(extensions)
    return JSONResponse(
        jsonable_encoder(body),
        status_code=problem.status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


async def _handle_known_error(request: Request, error: Exception) -> JSONResponse:
    for error_type, slug, fields in _ERROR_TYPES:
        if isinstance(error, error_type):
            headers = None
            if isinstance(error, ReadModelTimeoutError):
                headers = {"Retry-After": "1"}
            return problem_response(
                slug,
                str(error),
                request,
                headers,
                **{name: getattr(error, attr) for name, attr in fields.items()},
            )
    return await _handle_unexpected_error(request, error)


async def _handle_validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    items = list(error.errors())
    if items and all(item.get("type") == "json_invalid" for item in items):
        ctx = items[0].get("ctx") or {}
        reason = ctx.get("error", "invalid JSON")
        position = items[0].get("loc", ("body", "?"))[-1]
        return problem_response(
            "malformed-body",
            f"request body is not valid JSON: {reason} at character {position}",
            request,
        )
    errors = [
        {
            "location": [str(part) for part in item.get("loc", ())],
            "message": item.get("msg", ""),
            "input": _json_safe(item.get("input")),
        }
        for item in items
    ]
    detail = "; ".join(
        f"{'.'.join(e['location'])}: {e['message']} (got {_shorten(e['input'])})"
        for e in errors
    )
    return problem_response("invalid-request", detail, request, errors=errors)


def _json_safe(value: Any) -> Any:
    """Make a rejected input encodable as strict JSON (no NaN, bytes or surrogates)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value.encode("utf-8", errors="backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, dict):
        return {str(_json_safe(k)): _json_safe(v) for k, v in value.items()}
    return value


def _shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _handle_http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    slug = {
        400: "malformed-body",
        404: "not-found",
        405: "method-not-allowed",
        413: "request-too-large",
        415: "unsupported-media-type",
    }.get(error.status_code)
    if slug is None:
        body = {
            "type": "about:blank",
            "title": str(error.detail),
            "status": error.status_code,
            "detail": str(error.detail),
        }
        return JSONResponse(
            body, status_code=error.status_code, media_type=PROBLEM_MEDIA_TYPE
        )
    detail = str(error.detail)
    if error.status_code == 404:
        detail = f"no resource at {request.url.path}: check the method and the path"
    return problem_response(slug, detail, request)


async def _handle_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception(
        "request %s %s failed", request.method, request.url.path, exc_info=error
    )
    return problem_response("internal-error", "the server failed; see its log", request)


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error type to its problem response."""
    app.add_exception_handler(RequestValidationError, _handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, _handle_http_error)
    app.add_exception_handler(DomainError, _handle_known_error)
    for error_type, _, _ in _ERROR_TYPES:
        app.add_exception_handler(error_type, _handle_known_error)
    app.add_exception_handler(Exception, _handle_unexpected_error)
