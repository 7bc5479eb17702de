"""FastAPI application factory and lifespan."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import routes_admin, routes_conversations, routes_receipts, routes_users
from api.dependencies import ServiceDep, problem_responses
from api.problems import PROBLEM_TYPES, install_problem_handlers, problem_response
from infrastructure.bootstrap import Service, build_service
from infrastructure.settings import Settings, get_settings

logger = logging.getLogger(__name__)

# 1,000 messages of about 300 bytes each fit well below this.
MAX_BODY_BYTES = 1024 * 1024


class GroupCommitStats(BaseModel):
    """Counts of the group committer since the process started."""

    batches: int
    units: int
    events: int
    split_batches: int
    largest_batch: int


class HealthResponse(BaseModel):
    """Liveness of the service and the head of its event log."""

    status: str
    database: str
    position: int
    group_commit: GroupCommitStats | None


class ProblemTypeDescription(BaseModel):
    """Documentation of one problem type."""

    type: str
    title: str
    status: int
    description: str


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API; the lifespan opens the database and starts projections."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = await anyio.to_thread.run_sync(build_service, settings)
        if settings.run_projections:
            service.start_projections()
        # More request threads than pooled connections would only queue on
        # the pool and hit its timeout.
        limiter = anyio.to_thread.current_default_thread_limiter()
        limiter.total_tokens = service.max_connections
        app.state.service = service
        logger.info(
            "readseq started on %s (projections %s)",
            settings.database.display_name(),
            "in this process" if settings.run_projections else "elsewhere",
        )
        try:
            yield
        finally:
            await service.unread_view.async_reads.close()
            await anyio.to_thread.run_sync(_close, service)
            logger.info("readseq stopped")

    app = FastAPI(
        title="readseq",
        summary="Read state of chat conversations: unread counts and read positions.",
        version="0.1.0",
        lifespan=lifespan,
    )
    # Set when the server starts to shut down, so that open receipt streams
    # end instead of keeping the server waiting for their clients.
    app.state.stopping = threading.Event()
    install_problem_handlers(app)
    app.add_middleware(RequestBodyGuard, max_bytes=MAX_BODY_BYTES)
    app.include_router(routes_conversations.router)
    app.include_router(routes_users.router)
    app.include_router(routes_receipts.router)
    app.include_router(routes_admin.router)

    @app.get("/health", tags=["service"])
    def health(service: ServiceDep) -> HealthResponse:
        """Check the event store and return the head of the log."""
        committer = service.app.committer
        stats = None
        if committer is not None:
            stats = GroupCommitStats(**vars(committer.stats))
        return HealthResponse(
            status="ok",
            database=service.settings.database.backend,
            position=service.app.head_position(),
            group_commit=stats,
        )

    @app.get("/problems/{slug}", tags=["service"], responses=problem_responses(404))
    def problem_type(slug: str) -> ProblemTypeDescription:
        """Describe a problem type named in the `type` of an error response."""
        problem = PROBLEM_TYPES.get(slug)
        if problem is None:
            raise HTTPException(404, f"no problem type {slug!r}")
        return ProblemTypeDescription(
            type=problem.uri,
            title=problem.title,
            status=problem.status,
            description=problem.description,
        )

    return app


def _close(service: Service) -> None:
    service.close()


class RequestBodyGuard:
    """Check request bodies before the application parses them.

    Bodies are buffered up to `max_bytes`, so an oversized body gets 413
    whether or not it declares its length. A non-empty body must be JSON,
    otherwise 415.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject_size(scope, receive, send, int(declared))
            return

        chunks: list[bytes] = []
        size = 0
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._reject_size(scope, receive, send, size)
                return
            chunks.append(chunk)
            more_body = message.get("more_body", False)
        body = b"".join(chunks)

        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if body and not _is_json(content_type):
            response = problem_response(
                "unsupported-media-type",
                f"content type {content_type.decode('latin-1') or '(none)'!r} is not "
                "supported: send JSON with content-type application/json",
                instance=scope["path"],
            )
            await response(scope, receive, send)
            return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _reject_size(
        self, scope: Scope, receive: Receive, send: Send, size: int
    ) -> None:
        response = problem_response(
            "request-too-large",
            f"request body of {size} bytes or more exceeds the limit of "
            f"{self.max_bytes} bytes: send fewer messages per request",
            instance=scope["path"],
            limit=self.max_bytes,
        )
        await response(scope, receive, send)


def _is_json(content_type: bytes) -> bool:
    return content_type == b"application/json" or content_type.endswith(b"+json")
