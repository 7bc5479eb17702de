"""Composition root: builds the application, read models and workers from settings."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from eventsourcing.postgres import PostgresApplicationRecorder

from application.projections import ReadModels
from application.receipts import ReceiptQueries, ReceiptsProjection
from application.service import ReadStateApp
from application.unread import UnreadCountsProjection, UnreadQueries
from infrastructure.event_store import ddl_lock, event_store_env, prepare_database
from infrastructure.pg_listener import EventNotificationListener
from infrastructure.receipts_view import ReceiptsSqlView
from infrastructure.settings import Settings
from infrastructure.unread_view import UnreadCountsSqlView

logger = logging.getLogger(__name__)

# The library's SQLite pool opens at most 5 + 10 connections per process.
SQLITE_MAX_CONNECTIONS = 15


@dataclass
class Service:
    """Everything one process needs to serve commands and queries."""

    settings: Settings
    app: ReadStateApp
    unread_view: UnreadCountsSqlView
    read_models: ReadModels
    unread: UnreadQueries
    receipts_view: ReceiptsSqlView
    receipts: ReceiptQueries
    listener: EventNotificationListener | None = field(default=None)

    @property
    def max_connections(self) -> int:
        """Connections the database pool may open; size thread pools to match."""
        if self.settings.database.backend == "sqlite":
            return SQLITE_MAX_CONNECTIONS
        return self.settings.db_pool_size + self.settings.db_max_overflow

    def start_projections(self) -> None:
        """Run every projection in a background thread of this process."""
        self.read_models.start_workers(batch_size=self.settings.projection_batch_size)
        recorder = self.app.recorder
        if isinstance(recorder, PostgresApplicationRecorder):
            self.listener = EventNotificationListener(
                self.settings.database,
                recorder.channel_name,
                self.read_models.wake_all,
            )
            self.listener.start()

    def close(self) -> None:
        """Stop workers and close the database pool."""
        if self.listener is not None:
            self.listener.stop()
            self.listener = None
        self.read_models.stop_workers()
        self.app.close()
        logger.info("closed %s", self.settings.database.display_name())


def build_service(settings: Settings) -> Service:
    """Open the event store and read models named by the settings."""
    database = settings.database
    prepare_database(database)
    with ddl_lock(database):
        app = ReadStateApp(
            event_store_env(settings),
            snapshot_interval=settings.snapshot_interval,
            group_commit=settings.group_commit,
            aggregate_cache_size=settings.aggregate_cache_size,
        )
        datastore = app.factory.datastore  # type: ignore[attr-defined]
        unread_view = UnreadCountsSqlView(datastore)
        receipts_view = ReceiptsSqlView(datastore)
    read_models = ReadModels(
        app,
        [UnreadCountsProjection(unread_view), ReceiptsProjection(receipts_view)],
    )
    logger.info("opened %s", database.display_name())
    return Service(
        settings=settings,
        app=app,
        unread_view=unread_view,
        read_models=read_models,
        unread=UnreadQueries(unread_view, read_models),
        receipts_view=receipts_view,
        receipts=ReceiptQueries(receipts_view, read_models),
    )
