"""Running commands: locks, the aggregate cache, retries and group commit.

A command is a plan: the aggregates it needs, a `decide` step that runs the
domain methods on them, and a `finish` step that builds the caller's result.
`decide` must only compute (no I/O), because the async runner calls it on
the event loop when every aggregate is cached.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast
from uuid import UUID

import anyio.to_thread
from eventsourcing.persistence import IntegrityError

from application.commit import GroupCommitter
from application.errors import ConcurrencyConflictError
from domain.conversation import Conversation

if TYPE_CHECKING:
    from application.service import ReadStateApp

logger = logging.getLogger(__name__)

OutcomeT = TypeVar("OutcomeT")
ResultT = TypeVar("ResultT")

Decide = Callable[[list[Conversation | None]], tuple[list[Conversation], OutcomeT]]
Finish = Callable[[list[Conversation], OutcomeT, int | None], ResultT]


@dataclass(frozen=True)
class CommandPlan(Generic[OutcomeT, ResultT]):
    """A command's aggregates, decide step and result builder (see the module)."""

    aggregate_ids: list[UUID]
    decide: Decide[OutcomeT]
    finish: Finish[OutcomeT, ResultT]
    # For log lines: the owners and the conversation the command is about.
    owner_ids: str
    conversation_id: str
    # False when `decide` reads the store, so it must never run on the loop.
    pure: bool = True


class AggregateCache:
    """Least-recently-used conversations kept between commands.

    Callers hold the aggregate's lock while they use a cached conversation,
    so no two threads change one at the same time. Conversations with many
    unread messages are large; they are loaded from the store each time.
    """

    def __init__(self, size: int, max_messages: int = 1000) -> None:
        self.size = size
        self.max_messages = max_messages
        self._entries: OrderedDict[UUID, Conversation] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, aggregate_id: UUID) -> Conversation | None:
        """Return a cached conversation and mark it recently used."""
        with self._lock:
            conversation = self._entries.get(aggregate_id)
            if conversation is not None:
                self._entries.move_to_end(aggregate_id)
            return conversation

    def put(self, conversation: Conversation) -> None:
        """Keep a conversation whose events are all committed."""
        if self.size <= 0 or conversation.known_message_count > self.max_messages:
            self.evict([conversation.id])
            return
        with self._lock:
            self._entries[conversation.id] = conversation
            self._entries.move_to_end(conversation.id)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def evict(self, aggregate_ids: Iterable[UUID]) -> None:
        """Forget conversations that may differ from their stored state."""
        with self._lock:
            for aggregate_id in aggregate_ids:
                self._entries.pop(aggregate_id, None)


class CommandExecutor:
    """Runs command plans against one application.

    Commands on one aggregate are serialised inside the process by a striped
    lock, so only writers in other processes cause version conflicts. Those
    are retried with fresh loads and full-jitter exponential backoff.
    """

    # Many stripes, so that unrelated aggregates rarely share one; a shared
    # stripe sends a command from the event loop to a worker thread.
    LOCK_STRIPES = 4096
    MAX_ATTEMPTS = 12
    # Backoff before retry n is uniform in [0, min(cap, base * 2**n)] seconds.
    RETRY_BACKOFF_BASE = 0.002
    RETRY_BACKOFF_CAP = 0.1

    def __init__(self, app: ReadStateApp, cache: AggregateCache) -> None:
        self.app = app
        self.cache = cache
        self._locks = [threading.Lock() for _ in range(self.LOCK_STRIPES)]

    def run(self, plan: CommandPlan[OutcomeT, ResultT]) -> ResultT:
        """Run a command in this thread, retrying version conflicts."""
        with self._locked(plan.aggregate_ids):
            for attempt in range(1, self.MAX_ATTEMPTS + 1):
                loaded = [self._load(a) for a in plan.aggregate_ids]
                conversations, outcome, events = self._decide(
                    plan, [c for c, _ in loaded]
                )
                if not events:
                    cached = [c for c, from_cache in loaded if from_cache and c]
                    if cached and self._cache_is_stale(cached):
                        self.cache.evict(plan.aggregate_ids)
                        continue
                    return plan.finish(conversations, outcome, None)
                try:
                    position = self._commit(events)
                except IntegrityError:
                    self.cache.evict(plan.aggregate_ids)
                    self._log_conflict(plan, attempt)
                    self._back_off(attempt)
                    continue
                except BaseException:
                    self.cache.evict(plan.aggregate_ids)
                    raise
                self._committed(conversations, events)
                return plan.finish(conversations, outcome, position)
        raise ConcurrencyConflictError(
            plan.owner_ids, plan.conversation_id, self.MAX_ATTEMPTS
        )

    async def run_async(self, plan: CommandPlan[OutcomeT, ResultT]) -> ResultT:
        """Run a command, on the event loop when that cannot block it.

        When every aggregate is cached and unlocked, `decide` runs here and
        the commit is awaited, so the request holds no thread. Anything else
        (a cache miss, a busy aggregate, a no-op that must check the store,
        a conflict) goes to a worker thread and `run`.
        """
        committer = self.app.committer
        if committer is not None and plan.pure:
            done, result = await self._try_on_loop(plan, committer)
            if done:
                return cast(ResultT, result)
        return await anyio.to_thread.run_sync(self.run, plan)

    async def _try_on_loop(
        self, plan: CommandPlan[OutcomeT, ResultT], committer: GroupCommitter
    ) -> tuple[bool, Any]:
        locks = self._try_lock(plan.aggregate_ids)
        if locks is None:
            return False, None
        try:
            cached = [self.cache.get(a) for a in plan.aggregate_ids]
            if any(c is None for c in cached):
                return False, None
            conversations, outcome, events = self._decide(plan, list(cached))
            if not events:
                return False, None
            try:
                position = await committer.commit_async(events)
            except IntegrityError:
                self.cache.evict(plan.aggregate_ids)
                self._log_conflict(plan, 1)
                return False, None
            except BaseException:
                self.cache.evict(plan.aggregate_ids)
                raise
            # Snapshots read the aggregate, so they are taken under its lock.
            if self._snapshot_due(conversations, events):
                await anyio.to_thread.run_sync(self._committed, conversations, events)
            else:
                for conversation in conversations:
                    self.cache.put(conversation)
        finally:
            for lock in locks:
                lock.release()
        return True, plan.finish(conversations, outcome, position)

    def _decide(
        self, plan: CommandPlan[OutcomeT, ResultT], loaded: list[Conversation | None]
    ) -> tuple[list[Conversation], OutcomeT, list[Any]]:
        try:
            conversations, outcome = plan.decide(loaded)
        except BaseException:
            # A command may have changed an aggregate before it failed.
            self.cache.evict(plan.aggregate_ids)
            raise
        events = [event for c in conversations for event in c.collect_events()]
        return conversations, outcome, events

    def _commit(self, events: Sequence[Any]) -> int:
        committer = self.app.committer
        if committer is not None:
            return committer.commit(events)
        recordings = self.app.save(*events)
        return recordings[-1].notification.id

    def _committed(self, conversations: list[Conversation], events: list[Any]) -> None:
        counts = _events_per_aggregate(events)
        for conversation in conversations:
            self.cache.put(conversation)
            self.app.snapshot_if_due(conversation, counts.get(conversation.id, 0))

    def _snapshot_due(
        self, conversations: list[Conversation], events: list[Any]
    ) -> bool:
        counts = _events_per_aggregate(events)
        interval = self.app.snapshot_interval
        return any(
            c.version // interval != (c.version - counts.get(c.id, 0)) // interval
            for c in conversations
        )

    def _load(self, aggregate_id: UUID) -> tuple[Conversation | None, bool]:
        conversation = self.cache.get(aggregate_id)
        if conversation is not None:
            return conversation, True
        return self.app.load_by_id(aggregate_id), False

    def _cache_is_stale(self, conversations: Sequence[Conversation]) -> bool:
        # A command that records nothing cannot detect a conflict, so check
        # that no other process has recorded newer events before replying.
        for conversation in conversations:
            stored = self.app.recorder.select_events(
                conversation.id, desc=True, limit=1
            )
            if stored and stored[0].originator_version != conversation.version:
                return True
        return False

    def _stripes(self, aggregate_ids: Sequence[UUID]) -> list[threading.Lock]:
        # Index order, so that two multi-aggregate commands cannot deadlock.
        indexes = sorted({a.int % self.LOCK_STRIPES for a in aggregate_ids})
        return [self._locks[index] for index in indexes]

    @contextmanager
    def _locked(self, aggregate_ids: Sequence[UUID]) -> Iterator[None]:
        with ExitStack() as stack:
            for lock in self._stripes(aggregate_ids):
                stack.enter_context(lock)
            yield

    def _try_lock(self, aggregate_ids: Sequence[UUID]) -> list[threading.Lock] | None:
        acquired: list[threading.Lock] = []
        for lock in self._stripes(aggregate_ids):
            if not lock.acquire(blocking=False):
                for held in acquired:
                    held.release()
                return None
            acquired.append(lock)
        return acquired

    @staticmethod
    def _log_conflict(plan: CommandPlan[Any, Any], attempt: int) -> None:
        logger.warning(
            "version conflict for user %s in conversation %s, attempt %d: retrying",
            plan.owner_ids,
            plan.conversation_id,
            attempt,
        )

    def _back_off(self, attempt: int) -> None:
        # Full jitter, so competing processes spread out their retries.
        ceiling = min(self.RETRY_BACKOFF_CAP, self.RETRY_BACKOFF_BASE * 2**attempt)
        time.sleep(random.uniform(0, ceiling))  # noqa: S311 (not for security)


def _events_per_aggregate(events: Iterable[Any]) -> dict[UUID, int]:
    counts: dict[UUID, int] = {}
    for event in events:
        counts[event.originator_id] = counts.get(event.originator_id, 0) + 1
    return counts
