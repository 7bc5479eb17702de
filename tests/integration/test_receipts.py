"""Receipt feed and group read receipts on a real event store."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any

import anyio

from application.receipts import FeedPage, ReadersPage, Receipt
from domain.values import ConversationKind, ReceivedMessage
from infrastructure.bootstrap import Service, build_service
from infrastructure.settings import Settings

SENT_AT = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def message(seq: int, sender: str) -> ReceivedMessage:
    return ReceivedMessage(seq, sender, SENT_AT, client_msg_id=f"{sender}-{seq}")


def feed(service: Service, user: str, position: int, after: int = 0) -> FeedPage:
    return anyio.run(
        partial(
            service.receipts.feed,
            user,
            after=after,
            limit=500,
            min_position=position,
            timeout=10,
        )
    )


def readers(
    service: Service, conversation: str, seq: int, position: int
) -> ReadersPage:
    return anyio.run(
        partial(
            service.receipts.readers,
            conversation,
            seq,
            readers_after="",
            not_read_after="",
            limit=100,
            min_position=position,
            timeout=10,
        )
    )


def summary(receipts: list[Receipt]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(r.kind, r.conversation_id, r.reader_id, r.payload) for r in receipts]


def start_group(service: Service, *seqs_by_sender: tuple[int, str]) -> int:
    position = 0
    for seq, sender in seqs_by_sender:
        result = service.app.fan_out(
            "sg_team",
            message(seq, sender),
            ["A", "B", "C"],
            kind=ConversationKind.GROUP,
        )
        position = result.position
    return position


def test_group_read_counts_and_readers(service: Service) -> None:
    start_group(service, (1, "A"), (2, "B"), (3, "B"))

    after_b = service.app.set_has_read_seq("B", "sg_team", 1).position
    first = readers(service, "sg_team", 1, after_b)
    after_c = service.app.set_has_read_seq("C", "sg_team", 3).position
    second = readers(service, "sg_team", 1, after_c)
    feed_before = feed(service, "A", after_c)
    again = service.app.set_has_read_seq("B", "sg_team", 1)
    feed_after = feed(service, "A", again.position)

    assert first.message.read_count == 1
    assert [r.reader_id for r in first.readers] == ["B"]
    assert first.not_read_by == ["C"]
    assert second.message.read_count == 2
    assert [r.reader_id for r in second.readers] == ["B", "C"]
    assert second.not_read_by == []
    assert again.changed is False
    assert feed_after.receipts == feed_before.receipts
    group_reads = [r.payload for r in feed_before.receipts if r.kind == "group_read"]
    assert group_reads == [
        {"messages": [{"seq": 1, "read_count": 1}]},
        {"messages": [{"seq": 1, "read_count": 2}]},
    ]
    b_messages = readers(service, "sg_team", 2, after_c)
    assert b_messages.message.sender_id == "B"
    assert [r.reader_id for r in b_messages.readers] == ["C"]
    assert b_messages.not_read_by == ["A"]


def test_sender_receives_group_receipt_per_reader(service: Service) -> None:
    start_group(service, (1, "A"), (2, "A"))

    position = service.app.mark_seqs_read("C", "sg_team", [2]).position
    receipts = feed(service, "A", position).receipts

    own_reads = {"has_read_seq": 1, "read_seqs": [[1, 1]], "unread_count": 0}
    assert summary(receipts) == [
        ("read_state", "sg_team", "A", own_reads),
        (
            "read_state",
            "sg_team",
            "A",
            {"has_read_seq": 2, "read_seqs": [[2, 2]], "unread_count": 0},
        ),
        ("group_read", "sg_team", "C", {"messages": [{"seq": 2, "read_count": 1}]}),
    ]
    own = feed(service, "C", position).receipts
    assert summary(own) == [
        (
            "read_state",
            "sg_team",
            "C",
            {"has_read_seq": 0, "read_seqs": [[2, 2]], "unread_count": 1},
        )
    ]


def test_peer_receipt_leaves_own_total(service: Service) -> None:
    for seq in (1, 2, 3):
        service.app.fan_out("si_A_C", message(seq, "C"), ["A", "C"])
    service.app.fan_out("si_A_B", message(1, "A"), ["A", "B"])
    before = feed(service, "A", service.app.head_position())

    position = service.app.mark_seqs_read("B", "si_A_B", [1]).position
    page = feed(service, "A", position, after=before.receipts[-1].position)
    unread = anyio.run(
        partial(
            service.unread.page,
            "A",
            after=None,
            limit=10,
            include_read=False,
            min_position=position,
            timeout=10,
        )
    )

    assert summary(page.receipts) == [("peer_read", "si_A_B", "B", {"seqs": [[1, 1]]})]
    assert unread.totals.total_unread == 3


def test_reply_sends_peer_receipt(service: Service) -> None:
    service.app.fan_out("si_A_B", message(1, "A"), ["A", "B"])

    position = service.app.fan_out("si_A_B", message(2, "B"), ["A", "B"]).position
    receipts = feed(service, "A", position).receipts

    assert summary(receipts) == [
        (
            "read_state",
            "si_A_B",
            "A",
            {"has_read_seq": 1, "read_seqs": [[1, 1]], "unread_count": 0},
        ),
        ("peer_read", "si_A_B", "B", {"seqs": [[1, 1]]}),
    ]


def test_stale_device_emits_nothing(service: Service) -> None:
    for seq in range(1, 11):
        service.app.fan_out("si_A_B", message(seq, "A"), ["A", "B"])
    position = service.app.mark_conversation_read("B", "si_A_B", 8).position
    before = (
        feed(service, "A", position).receipts + feed(service, "B", position).receipts
    )

    stale = service.app.mark_conversation_read("B", "si_A_B", 5)
    after = (
        feed(service, "A", stale.position).receipts
        + feed(service, "B", stale.position).receipts
    )

    assert stale.changed is False
    assert after == before


def test_reader_below_min_seq_not_counted(service: Service) -> None:
    app = service.app
    history = [message(1, "A"), message(2, "A")]
    app.record_messages("A", "sg_late", history)
    app.record_messages("B", "sg_late", history)
    app.record_messages("L", "sg_late", history, min_seq=2)

    app.set_has_read_seq("B", "sg_late", 2)
    position = app.set_has_read_seq("L", "sg_late", 2).position
    first = readers(service, "sg_late", 1, position)
    second = readers(service, "sg_late", 2, position)

    assert [r.reader_id for r in first.readers] == ["B"]
    assert first.message.read_count == 1
    assert first.not_read_by == []
    assert [r.reader_id for r in second.readers] == ["B", "L"]
    assert second.message.read_count == 2


def test_rebuild_reproduces_feed_and_counts(settings: Settings) -> None:
    service = build_service(settings)
    service.start_projections()
    try:
        start_group(service, (1, "A"), (2, "B"), (3, "C"), (4, "A"))
        service.app.mark_seqs_read("B", "sg_team", [3])
        service.app.set_has_read_seq("C", "sg_team", 4)
        service.app.fan_out("si_A_B", message(1, "A"), ["A", "B"])
        position = service.app.set_has_read_seq("B", "si_A_B", 1).position
        service.read_models.wait_for("receipts", position, 10)
        service.read_models.wait_for("unread_counts", position, 10)
        before = service.receipts_view.checksums()
        unread_before = service.unread_view.summary()
    finally:
        service.close()

    rebuilt = build_service(settings)
    try:
        for name in ("receipts", "unread_counts"):
            rebuilt.read_models.worker(name).rebuild()
        after = rebuilt.receipts_view.checksums()
        unread_after = rebuilt.unread_view.summary()
    finally:
        rebuilt.close()

    assert set(before) == {"feed", "messages", "readers"}
    assert after == before
    assert unread_after == unread_before


def test_out_of_order_message_counts_earlier_reader(service: Service) -> None:
    group = ["a", "b", "c"]
    service.app.fan_out("sg_late", message(2, "b"), group, kind=ConversationKind.GROUP)
    service.app.fan_out("sg_late", message(1, "a"), group, kind=ConversationKind.GROUP)

    position = service.app.set_has_read_seq("c", "sg_late", 2).position
    page = readers(service, "sg_late", 1, position)
    receipts = feed(service, "a", position).receipts

    assert [r.reader_id for r in page.readers] == ["b", "c"]
    assert page.message.read_count == 2
    assert page.not_read_by == []
    group_reads = [(r.reader_id, r.payload) for r in receipts if r.kind == "group_read"]
    assert group_reads == [
        ("b", {"messages": [{"seq": 1, "read_count": 1}]}),
        ("c", {"messages": [{"seq": 1, "read_count": 2}]}),
    ]
