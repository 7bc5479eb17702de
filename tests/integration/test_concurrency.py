"""Concurrent writers and projection workers in separate services on one database.

Two services built on the same database act like two processes: each has its
own connection pool, aggregate locks and projection workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from domain.conversation import Conversation
from domain.values import ReceivedMessage
from infrastructure.bootstrap import Service, build_service
from infrastructure.settings import Settings

SENT_AT = datetime(2026, 3, 4, tzinfo=UTC)


def received(sender: str, *seqs: int) -> list[ReceivedMessage]:
    return [ReceivedMessage(seq, sender, SENT_AT) for seq in seqs]


@pytest.fixture
def two_services(settings: Settings) -> Iterator[tuple[Service, Service]]:
    first = build_service(settings)
    second = build_service(settings)
    yield first, second
    first.close()
    second.close()


def test_conflicting_write_is_retried(
    two_services: tuple[Service, Service], caplog: pytest.LogCaptureFixture
) -> None:
    first, second = two_services
    first.app.record_messages("B", "sg_hot", received("A", 1, 2, 3))
    attempts = 0

    def decide(conversation: Conversation) -> bool:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            # Another process writes between this load and this save.
            second.app.mark_seqs_read("B", "sg_hot", [1])
        return conversation.mark_seqs_read([2])

    with caplog.at_level(logging.WARNING, logger="application.execution"):
        result = first.app.executor.run(first.app._single_plan("B", "sg_hot", decide))

    assert attempts == 2
    assert result.state.has_read_seq == 2
    assert result.state.unread_count == 1
    assert "version conflict" in caplog.text
    assert "sg_hot" in caplog.text


def test_devices_in_two_processes_never_fail(
    two_services: tuple[Service, Service],
) -> None:
    services = two_services
    services[0].app.record_messages("B", "sg_hot", received("A", *range(1, 121)))
    errors: list[BaseException] = []

    def mark(service: Service, seqs: list[int]) -> None:
        try:
            for seq in seqs:
                service.app.mark_seqs_read("B", "sg_hot", [seq])
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(
            target=mark, args=(services[i % 2], list(range(i + 1, 121, 4)))
        )
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    final = services[1].app.get_conversation("B", "sg_hot")
    assert final.has_read_seq == 120
    assert final.unread_count == 0
    marked: list[list[list[int]]] = [
        entry.event["seqs"]  # type: ignore[misc]
        for entry in services[1].app.history("B", "sg_hot")
        if entry.event_type == "MessagesMarkedRead"
    ]
    assert sorted(
        seq
        for ranges in marked
        for first, last in ranges
        for seq in range(first, last + 1)
    ) == list(range(1, 121))


def test_two_workers_apply_each_event_once(
    two_services: tuple[Service, Service],
) -> None:
    first, second = two_services
    for index in range(40):
        first.app.record_messages("B", f"sg_room{index}", received("A", 1, 2, 3))
        first.app.mark_seqs_read("B", f"sg_room{index}", [index % 3 + 1])
    expected = sum(
        first.app.get_conversation("B", f"sg_room{index}").unread_count
        for index in range(40)
    )
    workers = [
        service.read_models.worker("unread_counts", batch_size=7)
        for service in (first, second)
    ]

    threads = [threading.Thread(target=worker.catch_up) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    summary = first.unread_view.summary()
    assert expected == 80
    assert summary.total_unread == expected
    assert summary.conversations == 40
    assert first.unread_view.position() == first.app.head_position()


def test_processes_starting_together_create_tables_once(database_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            build_service(Settings(database_url=database_url)).close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
