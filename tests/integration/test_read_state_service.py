"""The read-state service on a real event store, with its unread projection."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio
import pytest

from application.errors import ConversationNotFoundError, ReadModelTimeoutError
from application.results import UnreadConversation
from application.unread import UnreadPage
from domain.errors import SeqAboveMaxSeqError, UnknownClientMessageIdError
from domain.values import ReceivedMessage
from infrastructure.bootstrap import Service, build_service
from infrastructure.settings import Settings

SENT_AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
UNREAD = "unread_counts"


def received(sender: str, *seqs: int) -> list[ReceivedMessage]:
    return [
        ReceivedMessage(seq, sender, SENT_AT, client_msg_id=f"{sender}-{seq}")
        for seq in seqs
    ]


def read_page(service: Service, user_id: str, **options: Any) -> UnreadPage:
    """Run the async unread query to completion."""
    return anyio.run(partial(service.unread.page, user_id, **options))


def unread_total(service: Service, user_id: str, position: int) -> int:
    page = read_page(
        service,
        user_id,
        after=None,
        limit=100,
        include_read=True,
        min_position=position,
        timeout=10,
    )
    return page.totals.total_unread


def unread_row(service: Service, user_id: str, position: int) -> UnreadConversation:
    page = read_page(
        service,
        user_id,
        after=None,
        limit=100,
        include_read=True,
        min_position=position,
        timeout=10,
    )
    (row,) = page.conversations
    return row


@pytest.mark.parametrize(
    "marks",
    [
        pytest.param([[7, 6, 5]], id="one-call"),
        pytest.param([[7], [6], [5]], id="one-by-one"),
    ],
)
def test_reverse_marks_read_everything(
    service: Service, marks: list[list[int]]
) -> None:
    app = service.app
    app.record_messages("B", "si_A_B", received("A", *range(1, 8)))
    app.set_has_read_seq("B", "si_A_B", 4)

    for seqs in marks:
        result = app.mark_seqs_read("B", "si_A_B", seqs)

    assert result.state.has_read_seq == 7
    assert result.state.unread_count == 0
    row = unread_row(service, "B", result.position)
    assert row.has_read_seq == 7
    assert row.unread_count == 0


def test_rejected_position_records_nothing(service: Service) -> None:
    app = service.app
    app.record_messages("B", "si_A_B", received("A", 1, 2, 3, 4, 5))
    app.set_has_read_seq("B", "si_A_B", 5)
    head = app.head_position()
    version = app.get_conversation("B", "si_A_B").version

    with pytest.raises(SeqAboveMaxSeqError) as raised:
        app.set_has_read_seq("B", "si_A_B", 9)

    assert (raised.value.seq, raised.value.max_seq) == (9, 5)
    assert app.head_position() == head
    assert app.get_conversation("B", "si_A_B").version == version
    result = app.record_messages("B", "si_A_B", received("A", 6))
    assert result.state.unread_count == 1
    assert unread_total(service, "B", result.position) == 1


def test_mark_read_up_to_max_without_messages(service: Service) -> None:
    app = service.app
    app.record_messages("B", "si_A_B", received("A", *range(1, 11)))
    app.set_has_read_seq("B", "si_A_B", 8)

    result = app.mark_conversation_read("B", "si_A_B", 10)

    assert result.state.unread_count == 0
    assert unread_total(service, "B", result.position) == 0


def test_fan_out_sender_reads_own_messages(service: Service) -> None:
    app = service.app

    for seq in (1, 2, 3):
        result = app.fan_out("si_A_B", received("A", seq)[0], ["A", "B"])

    by_user = {r.state.owner_id: r.state for r in result.recipients}
    assert by_user["A"].unread_count == 0
    assert by_user["A"].has_read_seq == 3
    assert by_user["B"].unread_count == 3
    assert unread_total(service, "A", result.position) == 0
    assert unread_total(service, "B", result.position) == 3


def test_stale_device_records_no_event(service: Service) -> None:
    app = service.app
    app.record_messages("B", "si_A_B", received("A", *range(1, 11)))
    app.mark_conversation_read("B", "si_A_B", 8)
    head = app.head_position()

    result = app.mark_conversation_read("B", "si_A_B", 5)

    assert result.changed is False
    assert result.state.has_read_seq == 8
    assert result.position == head
    assert app.head_position() == head


def test_rebuild_after_restart_reproduces_counts(settings: Settings) -> None:
    first = build_service(settings)
    first.start_projections()
    app = first.app
    for seq in (1, 2):
        app.fan_out("si_A_B", received("B", seq)[0], ["A", "B"])
    app.set_has_read_seq("A", "si_A_B", 2)
    for seq in (3, 4):
        result = app.fan_out("si_A_B", received("A", seq)[0], ["A", "B"])
    before = {user: unread_row(first, user, result.position) for user in ("A", "B")}
    first.close()

    second = build_service(settings)
    try:
        worker = second.read_models.worker(UNREAD)
        replayed = worker.rebuild()
        rebuilt_position = worker.position
        second.read_models.start_workers()
        after = {user: unread_row(second, user, result.position) for user in ("A", "B")}
    finally:
        second.close()

    assert replayed > 0
    assert rebuilt_position == result.position
    assert after["A"].has_read_seq == 4
    assert after["A"].unread_count == 0
    assert after["B"].unread_count == 2
    assert after == before


def test_client_msg_id_below_position_is_no_op(service: Service) -> None:
    app = service.app
    app.record_messages("B", "si_A_B", received("A", 1, 2, 3))
    app.set_has_read_seq("B", "si_A_B", 2)

    result = app.mark_client_msg_ids_read("B", "si_A_B", ["A-1", "A-3"])

    assert result.changed is True
    assert result.state.has_read_seq == 3
    with pytest.raises(UnknownClientMessageIdError) as raised:
        app.mark_client_msg_ids_read("B", "si_A_B", ["A-1", "missing"])
    assert raised.value.client_msg_ids == ["missing"]


def test_unknown_conversation_not_found(service: Service) -> None:
    with pytest.raises(ConversationNotFoundError):
        service.app.mark_seqs_read("B", "si_A_B", [1])
    with pytest.raises(ConversationNotFoundError):
        service.app.get_conversation("B", "si_A_B")


def test_history_shows_state_after_each_event(service: Service) -> None:
    app = service.app
    app.record_messages("B", "si_A_B", received("A", 1, 2, 3))
    app.mark_seqs_read("B", "si_A_B", [2])
    app.set_has_read_seq("B", "si_A_B", 3)

    entries = app.history("B", "si_A_B")
    until_two = app.history("B", "si_A_B", until_version=2)

    assert [e.event_type for e in entries] == [
        "Started",
        "MessagesPulled",
        "MessagesMarkedRead",
        "HasReadSeqSet",
    ]
    assert [e.state.unread_count for e in entries] == [0, 3, 2, 0]
    assert [e.state.has_read_seq for e in entries] == [0, 0, 0, 3]
    assert len(until_two) == 2
    assert entries[2].event["seqs"] == [[2, 2]]


def test_snapshots_keep_loaded_state_exact(database_url: str) -> None:
    settings = Settings(database_url=database_url, snapshot_interval=5)
    service = build_service(settings)
    try:
        app = service.app
        for seq in range(1, 40):
            app.record_messages("B", "sg_big", received("A", seq))
            if seq % 3 == 0:
                app.mark_seqs_read("B", "sg_big", [seq - 1])
        assert app.snapshots is not None
        snapshots = list(
            app.snapshots.get(app._aggregate_id("B", "sg_big"), desc=True, limit=1)
        )
        loaded = app.get_conversation("B", "sg_big")
        replayed = app.history("B", "sg_big")[-1].state
    finally:
        service.close()

    assert snapshots, "no snapshot was taken"
    assert snapshots[0].originator_version >= 45
    assert loaded == replayed
    assert loaded.unread_count == 39 - 13


def test_query_times_out_when_projection_behind(settings: Settings) -> None:
    service = build_service(settings)
    try:
        result = service.app.record_messages("B", "si_A_B", received("A", 1))
        with pytest.raises(ReadModelTimeoutError) as raised:
            read_page(
                service,
                "B",
                after=None,
                limit=10,
                include_read=False,
                min_position=result.position,
                timeout=0.05,
            )
    finally:
        service.close()

    assert raised.value.min_position == result.position
    assert raised.value.position == 0


def test_unread_list_pages_by_conversation(service: Service) -> None:
    app = service.app
    for index in range(7):
        result = app.record_messages("B", f"sg_room{index}", received("A", 1, 2))
    app.set_has_read_seq("B", "sg_room3", 2)
    position = app.mark_seqs_read("B", "sg_room5", [1]).position

    seen: list[tuple[str, int]] = []
    cursor = None
    while True:
        page = read_page(
            service,
            "B",
            after=cursor,
            limit=2,
            include_read=False,
            min_position=max(position, result.position),
            timeout=10,
        )
        seen.extend(
            (row.conversation_id, row.unread_count) for row in page.conversations
        )
        cursor = page.next_cursor
        if cursor is None:
            break

    assert seen == [
        ("sg_room0", 2),
        ("sg_room1", 2),
        ("sg_room2", 2),
        ("sg_room4", 2),
        ("sg_room5", 1),
        ("sg_room6", 2),
    ]
    assert page.totals.total_unread == 11
    assert page.totals.conversations_with_unread == 6


def test_reset_elsewhere_never_serves_stale_page(
    service: Service, settings: Settings
) -> None:
    result = service.app.record_messages("B", "si_A_B", received("A", 1, 2, 3))
    assert unread_total(service, "B", result.position) == 3
    other_process = build_service(settings)
    try:
        other_process.unread_view.reset()
    finally:
        other_process.close()

    page = read_page(
        service,
        "B",
        after=None,
        limit=10,
        include_read=True,
        min_position=result.position,
        timeout=10,
    )

    assert page.position >= result.position
    assert page.totals.total_unread == 3


def test_history_pages_match_full_replay(service: Service) -> None:
    app = service.app
    for seq in range(1, 8):
        app.record_messages("B", "sg_long", received("A", seq))
        app.mark_seqs_read("B", "sg_long", [seq])
    full = app.history("B", "sg_long")

    pages = []
    after = 0
    while True:
        page = app.history("B", "sg_long", after_version=after, limit=4)
        if not page:
            break
        pages.extend(page)
        after = page[-1].version

    assert len(full) == 15
    assert pages == full
