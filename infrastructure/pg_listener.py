"""Wake projection workers on PostgreSQL notifications of new events."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from infrastructure.event_store import conninfo
from infrastructure.settings import DatabaseConfig

logger = logging.getLogger(__name__)


class EventNotificationListener:
    """LISTENs on the channel the event store NOTIFYs on every insert.

    The library sends `NOTIFY <events table>` in each save transaction, so
    writers in any process wake this process's projection workers. Workers
    also poll at a slow interval, because a lost connection loses notifications.
    """

    def __init__(
        self,
        database: DatabaseConfig,
        channel: str,
        on_notify: Callable[[], None],
    ) -> None:
        self.database = database
        self.channel = channel
        self.on_notify = on_notify
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen in a daemon thread."""
        self._thread = threading.Thread(
            target=self._run, name=f"listen-{self.channel}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening; the thread exits within about one second."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
                failures = 0
            except psycopg.Error:
                failures += 1
                delay = min(0.5 * 2**failures, 30.0)
                logger.exception(
                    "listening on channel %s of %s failed (failure %d); "
                    "reconnecting in %.1f s",
                    self.channel,
                    self.database.display_name(),
                    failures,
                    delay,
                )
                # Events may have arrived while disconnected.
                self.on_notify()
                self._stop.wait(delay)

    def _listen(self) -> None:
        with psycopg.connect(conninfo(self.database), autocommit=True) as conn:
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
            logger.info("listening for new events on channel %s", self.channel)
            while not self._stop.is_set():
                for _ in conn.notifies(timeout=1.0, stop_after=1):
                    self.on_notify()
        logger.info("stopped listening on channel %s", self.channel)
