"""Projection workers: follow the event log and feed read models in batches.

A projection writes its rows and its tracking position in one transaction.
The position is compared and set (it must still equal the position the batch
started from), so two workers of one projection never apply a batch twice:
the loser rolls back, reads the new position and carries on from there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from application.errors import ReadModelTimeoutError, UnknownProjectionError
from application.results import ProjectionStatus

if TYPE_CHECKING:
    from application.service import ReadStateApp

logger = logging.getLogger(__name__)


class ProjectionPositionMovedError(Exception):
    """Another worker moved the tracking position since this batch was read."""

    def __init__(self, projection: str, expected: int) -> None:
        self.projection = projection
        self.expected = expected
        super().__init__(
            f"position of projection {projection!r} is no longer {expected}"
        )


@dataclass(frozen=True)
class ProjectedEvent:
    """A domain event with its position (notification ID) in the log."""

    position: int
    event: Any


class Projection(Protocol):
    """A read model fed from the event log."""

    name: str

    def position(self) -> int:
        """Return the tracking position stored with the read model."""
        ...

    def process(
        self, batch: Sequence[ProjectedEvent], expected_position: int, new_position: int
    ) -> None:
        """Apply a batch and move the position, or raise the moved error."""
        ...

    def reset(self) -> None:
        """Delete the read model's rows and set its position to 0."""
        ...


ProgressCallback = Callable[[int, int], None]
ReadT = TypeVar("ReadT")


class ProjectionWorker:
    """Feeds projections from the log, in a thread or on demand.

    All projections of one worker share each batch read from the log, so the
    events are fetched and decoded once. Each projection still keeps its own
    position and transaction, and a failing projection does not hold back
    the others.
    """

    def __init__(
        self,
        app: ReadStateApp,
        projections: Projection | Sequence[Projection],
        *,
        batch_size: int = 500,
        idle_poll_seconds: float = 1.0,
        linger_seconds: float = 0.02,
    ) -> None:
        self.app = app
        self.linger_seconds = linger_seconds
        if not isinstance(projections, Sequence):
            projections = [projections]
        self.projections = list(projections)
        self.batch_size = batch_size
        self.idle_poll_seconds = idle_poll_seconds
        self._positions = {p.name: p.position() for p in self.projections}
        self._advanced = threading.Condition()
        self._wake = threading.Event()
        # Set while a query waits for a position, to skip the linger.
        self._urgent = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        """Names of the projections this worker feeds."""
        return ", ".join(p.name for p in self.projections)

    @property
    def position(self) -> int:
        """Lowest position this worker has seen committed for its projections."""
        return min(self._positions.values())

    def position_of(self, name: str) -> int:
        """Last position this worker has seen committed for one projection."""
        return self._positions[name]

    def wake(self, _position: int | None = None) -> None:
        """Ask the worker thread to look for new events."""
        self._wake.set()

    def hurry(self) -> None:
        """Ask for new events now, without lingering, for a waiting query."""
        self._urgent.set()
        self._wake.set()

    def _follow_external_reset(self) -> None:
        # A rebuild in another process sets the stored position back; only a
        # failed compare-and-set would reveal it, and that needs new events.
        for projection in self.projections:
            try:
                stored = projection.position()
            except Exception:
                logger.exception(
                    "reading the position of projection %s failed", projection.name
                )
                continue
            if stored < self._positions[projection.name]:
                logger.info(
                    "projection %s was reset elsewhere to position %d, replaying",
                    projection.name,
                    stored,
                )
                self._set_position(projection.name, stored)

    def rewind(self) -> None:
        """Continue from the stored positions after a reset elsewhere."""
        for projection in self.projections:
            self._set_position(projection.name, projection.position())
        self._wake.set()

    def process_next_batch(self) -> int:
        """Process at most one batch; return the number of events read.

        Raises the first projection error after the other projections of the
        batch have been processed.
        """
        start = self.position
        notifications = self.app.recorder.select_notifications(
            start=start,
            limit=self.batch_size,
            inclusive_of_start=False,
        )
        if not notifications:
            return 0
        batch = [
            ProjectedEvent(n.id, self.app.mapper.to_domain_event(n))
            for n in notifications
        ]
        new_position = notifications[-1].id
        failure: Exception | None = None
        for projection in self.projections:
            try:
                self._process(projection, batch, new_position)
            except Exception as error:
                failure = failure or error
                logger.exception(
                    "projection %s failed after position %d",
                    projection.name,
                    self._positions[projection.name],
                )
        if failure is not None:
            raise failure
        return len(batch)

    def _process(
        self, projection: Projection, batch: list[ProjectedEvent], new_position: int
    ) -> None:
        position = self._positions[projection.name]
        if position >= new_position:
            return
        pending = [item for item in batch if item.position > position]
        try:
            projection.process(pending, position, new_position)
        except ProjectionPositionMovedError:
            stored = projection.position()
            logger.info(
                "projection %s moved from %d to %d elsewhere; continuing from there",
                projection.name,
                position,
                stored,
            )
            self._set_position(projection.name, stored)
            return
        self._set_position(projection.name, new_position)

    def catch_up(self, progress: ProgressCallback | None = None) -> int:
        """Process batches until the log head; return the events processed."""
        for projection in self.projections:
            self._set_position(projection.name, projection.position())
        processed = 0
        while not self._stop.is_set():
            count = self.process_next_batch()
            if count == 0:
                break
            processed += count
            if progress is not None:
                progress(self.position, processed)
        return processed

    def rebuild(self, progress: ProgressCallback | None = None) -> int:
        """Clear the read models and replay the whole log into them."""
        logger.info("rebuilding projection %s from position 0", self.name)
        for projection in self.projections:
            projection.reset()
            self._set_position(projection.name, 0)
        return self.catch_up(progress)

    def run(self) -> None:
        """Follow the log until `stop()`, retrying failed batches with backoff."""
        logger.info("projection %s started at position %d", self.name, self.position)
        failures = 0
        while not self._stop.is_set():
            try:
                count = self.process_next_batch()
            except Exception:
                failures += 1
                delay = min(0.1 * 2**failures, 30.0)
                logger.warning(
                    "projection %s failed (failure %d); retrying in %.1f s",
                    self.name,
                    failures,
                    delay,
                )
                self._stop.wait(delay)
                continue
            failures = 0
            if count == 0:
                self._follow_external_reset()
                self._wake.wait(self.idle_poll_seconds)
                self._wake.clear()
            elif count < self.batch_size and not self._urgent.is_set():
                # Caught up with a small batch: let events gather a moment, so
                # that under load one transaction serves many events. A query
                # waiting for a position cuts the wait short.
                self._urgent.wait(self.linger_seconds)
            self._urgent.clear()
        logger.info("projection %s stopped at position %d", self.name, self.position)

    def start(self) -> None:
        """Run the worker in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, name=f"projection-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker thread after its current batch."""
        self._stop.set()
        self._wake.set()
        self._urgent.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_for(self, position: int, timeout: float, name: str | None = None) -> bool:
        """Wait until `position` is processed (by projection `name`, or by all)."""
        deadline = time.monotonic() + timeout
        with self._advanced:
            while self._current(name) < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.hurry()
                self._advanced.wait(remaining)
        return True

    def _current(self, name: str | None) -> int:
        return self.position if name is None else self._positions[name]

    def _set_position(self, name: str, position: int) -> None:
        with self._advanced:
            self._positions[name] = position
            self._advanced.notify_all()


class _PositionWatch:
    """One poller per projection that any number of async waiters share."""

    def __init__(self, read: Callable[[], Any], interval: float) -> None:
        self.read = read
        self.interval = interval
        self.position = -1
        self.changed = asyncio.Event()
        self.waiters = 0
        self.running = False

    async def run(self) -> None:
        try:
            while self.waiters > 0:
                position = await self.read()
                if position != self.position:
                    self.position = position
                    self.changed.set()
                    self.changed = asyncio.Event()
                await anyio.sleep(self.interval)
        finally:
            self.running = False


class ReadModels:
    """The projections of one service and the waits on their positions.

    When a projection's worker runs in this process, waits use its in-memory
    position; otherwise they poll the stored position with a growing interval.
    """

    # Seconds between the position checks that wake idle feed streams.
    WATCH_INTERVAL = 0.25

    def __init__(self, app: ReadStateApp, projections: Sequence[Projection]) -> None:
        self.app = app
        self.projections = {p.name: p for p in projections}
        self.workers: dict[str, ProjectionWorker] = {}
        self._watches: dict[str, _PositionWatch] = {}

    def get(self, name: str) -> Projection:
        """Return the projection of that name, or raise `UnknownProjectionError`."""
        try:
            return self.projections[name]
        except KeyError:
            raise UnknownProjectionError(name, list(self.projections)) from None

    def worker(self, name: str, **options: Any) -> ProjectionWorker:
        """Return a new worker for one projection (not started)."""
        return ProjectionWorker(self.app, self.get(name), **options)

    def start_workers(self, **options: Any) -> None:
        """Start one worker thread for all projections, woken after each save."""
        worker = ProjectionWorker(self.app, list(self.projections.values()), **options)
        self.app.add_save_listener(worker.wake)
        worker.start()
        for name in self.projections:
            self.workers[name] = worker

    def wake_all(self, _position: int | None = None) -> None:
        """Wake every local worker, for example on a database notification."""
        for worker in set(self.workers.values()):
            worker.wake()

    def stop_workers(self) -> None:
        """Stop every local worker thread."""
        for worker in set(self.workers.values()):
            worker.stop()
        self.workers.clear()

    def wait_for(self, name: str, min_position: int, timeout: float) -> None:
        """Block until projection `name` has processed `min_position`.

        Raises `ReadModelTimeoutError` after `timeout` seconds.
        """
        projection = self.get(name)
        if min_position <= 0:
            return
        worker = self.workers.get(name)
        if worker is not None:
            if not worker.wait_for(min_position, timeout, name):
                raise ReadModelTimeoutError(
                    name, min_position, worker.position_of(name), timeout
                )
            return

        deadline = time.monotonic() + timeout
        interval = 0.002
        while True:
            position = projection.position()
            if position >= min_position:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadModelTimeoutError(name, min_position, position, timeout)
            time.sleep(min(interval, remaining))
            interval = min(interval * 2, 0.05)

    def request_rebuild(self, name: str) -> None:
        """Clear a read model; its worker, here or elsewhere, replays the log.

        A worker notices the reset when its next compare-and-set of the
        position fails, and continues from position 0.
        """
        projection = self.get(name)
        logger.info("rebuild of projection %s requested", name)
        projection.reset()
        worker = self.workers.get(name)
        if worker is not None:
            worker.rewind()

    async def wait_for_async(
        self,
        name: str,
        min_position: int,
        timeout: float,
        *,
        max_interval: float = 0.02,
    ) -> None:
        """Wait like `wait_for`, but without holding a thread while waiting.

        Polls the local worker's position, or the stored one, at intervals
        that grow from 1 ms to `max_interval` seconds.
        """
        projection = self.get(name)
        if min_position <= 0:
            return
        worker = self.workers.get(name)
        deadline = time.monotonic() + timeout
        interval = 0.001
        while True:
            if worker is not None:
                position = worker.position_of(name)
            else:
                position = await anyio.to_thread.run_sync(projection.position)
            if position >= min_position:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadModelTimeoutError(name, min_position, position, timeout)
            if worker is not None:
                worker.hurry()
            await anyio.sleep(min(interval, remaining))
            interval = min(interval * 2, max_interval)

    async def read_reached(
        self,
        name: str,
        min_position: int,
        timeout: float,
        read: Callable[[], Awaitable[tuple[ReadT, int]]],
    ) -> tuple[ReadT, int]:
        """Wait for `min_position`, then read rows with the stored position.

        `read` returns its rows and the position stored with them. While that
        position is below `min_position` (the rows were reset by a rebuild in
        another process, say), this waits again and rereads, until `timeout`
        seconds have passed in all; then it raises `ReadModelTimeoutError`.
        """
        deadline = time.monotonic() + timeout
        await self.wait_for_async(name, min_position, timeout)
        while True:
            rows, position = await read()
            if position >= min_position:
                return rows, position
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadModelTimeoutError(name, min_position, position, timeout)
            self.rewind(name)
            await self.wait_for_async(name, min_position, remaining)

    async def wait_beyond(self, name: str, position: int, timeout: float) -> int:
        """Wait until projection `name` passes `position`, or `timeout` seconds.

        Returns the position last seen. All waiters of a process share one
        check every `WATCH_INTERVAL` seconds (in memory with a local worker,
        one query otherwise), so idle streams cost almost nothing.
        """
        watch = self._watch(name)
        watch.waiters += 1
        if not watch.running:
            watch.running = True
            _start_in_background(watch.run())
        try:
            with anyio.move_on_after(timeout):
                while watch.position <= position:
                    await watch.changed.wait()
        finally:
            watch.waiters -= 1
        return watch.position

    def _watch(self, name: str) -> _PositionWatch:
        watch = self._watches.get(name)
        if watch is None:
            projection = self.get(name)

            async def read() -> int:
                worker = self.workers.get(name)
                if worker is not None:
                    return worker.position_of(name)
                return int(await anyio.to_thread.run_sync(projection.position))

            watch = _PositionWatch(read, self.WATCH_INTERVAL)
            self._watches[name] = watch
        return watch

    def rewind(self, name: str) -> None:
        """Make the local worker of a projection re-read its stored position."""
        worker = self.workers.get(name)
        if worker is not None:
            worker.rewind()

    def status(self) -> list[ProjectionStatus]:
        """Return each projection's position against the log head."""
        head = self.app.head_position()
        return [
            ProjectionStatus(name=name, position=projection.position(), head=head)
            for name, projection in self.projections.items()
        ]


def _start_in_background(coroutine: Coroutine[Any, Any, None]) -> None:
    task = asyncio.get_running_loop().create_task(coroutine)
    _BACKGROUND_TASKS.add(task)
    task.add_done_callback(_BACKGROUND_TASKS.discard)


# Strong references, so that running background tasks are not collected.
_BACKGROUND_TASKS: set[asyncio.Task[None]] = set()
