"""Group commit: the events of concurrent commands share one transaction.

Each command thread hands its new events to the committer and waits. The
committer thread takes everything queued at that moment, up to a bound, and
saves it in one transaction. Commands that arrive meanwhile form the next
batch. Nothing waits on a timer, so a lone command is saved at once, and
under load one commit (one fsync) serves many commands.

If the shared transaction fails, each unit of the batch is saved alone, so a
conflicting or failing unit gets its own error and the others still commit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventsourcing.persistence import Recording

logger = logging.getLogger(__name__)


class SavesEvents(Protocol):
    """The part of an eventsourcing application the committer uses."""

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        """Record events in one transaction and return their recordings."""
        ...


class CommitterStoppedError(RuntimeError):
    """The committer was stopped, so the events were not saved."""


@dataclass
class _Unit:
    events: Sequence[Any]
    done: threading.Event = field(default_factory=threading.Event)
    position: int | None = None
    error: BaseException | None = None
    # Called in the committer thread once the unit is settled.
    on_done: Callable[[_Unit], None] | None = None

    def finish(
        self, position: int | None = None, error: BaseException | None = None
    ) -> None:
        self.position = position
        self.error = error
        self.done.set()
        if self.on_done is not None:
            self.on_done(self)


@dataclass
class CommitStats:
    """Counts since the committer started."""

    batches: int = 0
    units: int = 0
    events: int = 0
    split_batches: int = 0
    largest_batch: int = 0


class GroupCommitter:
    """Saves queued units of events together, one transaction per batch."""

    def __init__(
        self, app: SavesEvents, *, max_events: int = 1000, autostart: bool = True
    ) -> None:
        self.app = app
        # A batch closes before this many events, but a unit is never split.
        self.max_events = max_events
        self.stats = CommitStats()
        self._queue: list[_Unit] = []
        self._condition = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        if autostart:
            self.start()

    def commit(self, events: Sequence[Any]) -> int:
        """Save events with whatever else is queued; return their last position.

        Raises the error of this unit's save, for example the library's
        `IntegrityError` when another writer recorded the same version.
        """
        unit = _Unit(events)
        with self._condition:
            if self._stopping:
                raise CommitterStoppedError("the committer is stopped")
            self._queue.append(unit)
            self._condition.notify()
        unit.done.wait()
        if unit.error is not None:
            raise unit.error
        assert unit.position is not None
        return unit.position

    async def commit_async(self, events: Sequence[Any]) -> int:
        """Save events like `commit`, awaiting the batch instead of blocking."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()

        def settle(unit: _Unit) -> None:
            loop.call_soon_threadsafe(_settle_future, future, unit)

        unit = _Unit(events, on_done=settle)
        with self._condition:
            if self._stopping:
                raise CommitterStoppedError("the committer is stopped")
            self._queue.append(unit)
            self._condition.notify()
        return await future

    def start(self) -> None:
        """Run the committer thread."""
        self._stopping = False
        self._thread = threading.Thread(
            target=self._run, name="group-commit", daemon=True
        )
        self._thread.start()
        logger.info(
            "group commit started, at most %d events per batch", self.max_events
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        logger.info(
            "group commit stopped after %d batches, %d units, %d events",
            self.stats.batches,
            self.stats.units,
            self.stats.events,
        )

    def pending(self) -> int:
        """Return the number of units waiting for the next batch."""
        with self._condition:
            return len(self._queue)

    def run_once(self) -> int:
        """Commit the queued units as one batch now; return how many there were."""
        batch = self._take_batch()
        if not batch:
            return 0
        try:
            self._commit(batch)
        except BaseException as error:
            # Never leave a caller waiting, whatever went wrong.
            logger.exception("group commit of %d units failed", len(batch))
            for unit in batch:
                if not unit.done.is_set():
                    unit.finish(error=error)
            if not isinstance(error, Exception):
                raise
        return len(batch)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._queue and not self._stopping:
                    self._condition.wait()
                if not self._queue and self._stopping:
                    return
            self.run_once()

    def _take_batch(self) -> list[_Unit]:
        with self._condition:
            batch: list[_Unit] = []
            size = 0
            while self._queue and (
                not batch or size + len(self._queue[0].events) <= self.max_events
            ):
                unit = self._queue.pop(0)
                batch.append(unit)
                size += len(unit.events)
            return batch

    def _commit(self, batch: list[_Unit]) -> None:
        events = [event for unit in batch for event in unit.events]
        self.stats.batches += 1
        self.stats.units += len(batch)
        self.stats.events += len(events)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        try:
            recordings = self.app.save(*events)
        except Exception as error:
            if len(batch) == 1:
                batch[0].finish(error=error)
                return
            self.stats.split_batches += 1
            logger.warning(
                "batch of %d units failed (%s: %s); saving each unit alone",
                len(batch),
                type(error).__name__,
                error,
            )
            for unit in batch:
                self._commit_alone(unit)
            return
        offset = 0
        for unit in batch:
            offset += len(unit.events)
            unit.finish(position=recordings[offset - 1].notification.id)

    def _commit_alone(self, unit: _Unit) -> None:
        try:
            recordings = self.app.save(*unit.events)
        except Exception as error:
            unit.finish(error=error)
        else:
            unit.finish(position=recordings[-1].notification.id)


def _settle_future(future: asyncio.Future[int], unit: _Unit) -> None:
    if future.cancelled():
        return
    if unit.error is not None:
        future.set_exception(unit.error)
    else:
        assert unit.position is not None
        future.set_result(unit.position)
