"""Rule tables for the Conversation aggregate, without any storage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.conversation import Conversation
from domain.errors import (
    ClientMessageIdConflictError,
    ConversationKindContradictsIdError,
    ConversationKindRequiredError,
    InvalidConversationIdError,
    InvalidSeqError,
    InvalidUserIdError,
    NotAMemberError,
    SeqAboveMaxSeqError,
    SeqConflictError,
    UnknownClientMessageIdError,
)
from domain.values import MAX_SEQ, ConversationKind, ReadCause, ReceivedMessage

SENT_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def messages(sender: str, *seqs: int, counts: bool = True) -> list[ReceivedMessage]:
    return [
        ReceivedMessage(
            seq=seq,
            sender_id=sender,
            sent_at=SENT_AT,
            client_msg_id=f"{sender}-{seq}",
            counts_as_unread=counts,
        )
        for seq in seqs
    ]


def bob_with_unread(max_seq: int, has_read_seq: int = 0) -> Conversation:
    """B's view of a chat with A, where A sent 1..max_seq and B read up to a seq."""
    conversation = Conversation.start("B", "si_A_B")
    conversation.pull(messages("A", *range(1, max_seq + 1)))
    if has_read_seq:
        conversation.set_has_read_seq(has_read_seq, ReadCause.SET)
    conversation.collect_events()
    return conversation


def event_names(conversation: Conversation) -> list[str]:
    return [type(e).__name__ for e in conversation.collect_events()]


# ---- rule 1: the read position only moves forward --------------------------


@pytest.mark.parametrize(
    ("position", "requested", "expected_position", "expected_events"),
    [
        pytest.param(8, 5, 8, [], id="stale-device-lower"),
        pytest.param(8, 8, 8, [], id="equal"),
        pytest.param(8, 0, 8, [], id="zero"),
        pytest.param(8, 9, 9, ["HasReadSeqSet"], id="forward-by-one"),
        pytest.param(0, 10, 10, ["HasReadSeqSet"], id="first-read-to-max"),
    ],
)
def test_read_position_only_moves_forward(
    position: int, requested: int, expected_position: int, expected_events: list[str]
) -> None:
    conversation = bob_with_unread(10, position)

    moved = conversation.set_has_read_seq(requested, ReadCause.SET)

    assert moved is bool(expected_events)
    assert conversation.has_read_seq == expected_position
    assert event_names(conversation) == expected_events


def test_stale_device_after_newer_device_keeps_position() -> None:
    conversation = bob_with_unread(10)
    conversation.set_has_read_seq(8, ReadCause.MARK_CONVERSATION_READ)
    conversation.collect_events()

    moved = conversation.set_has_read_seq(5, ReadCause.MARK_CONVERSATION_READ)

    assert moved is False
    assert conversation.has_read_seq == 8
    assert conversation.unread_count == 2
    assert conversation.collect_events() == []


# ---- rule 2: every seq is between 1 and max_seq ---------------------------


@pytest.mark.parametrize(
    ("command", "error_type", "named"),
    [
        pytest.param(
            lambda c: c.mark_seqs_read([9]),
            SeqAboveMaxSeqError,
            {"seq": 9, "max_seq": 5},
            id="mark-above-max",
        ),
        pytest.param(
            lambda c: c.mark_seqs_read([3, 9]),
            SeqAboveMaxSeqError,
            {"seq": 9, "max_seq": 5},
            id="mark-mixed-rejects-all",
        ),
        pytest.param(
            lambda c: c.set_has_read_seq(9, ReadCause.SET),
            SeqAboveMaxSeqError,
            {"seq": 9, "max_seq": 5},
            id="set-above-max",
        ),
        pytest.param(
            lambda c: c.set_has_read_seq(10**18, ReadCause.SET),
            SeqAboveMaxSeqError,
            {"seq": 10**18, "max_seq": 5},
            id="set-huge",
        ),
        pytest.param(
            lambda c: c.set_has_read_seq(2**63, ReadCause.SET),
            InvalidSeqError,
            {"seq": 2**63},
            id="set-beyond-int64",
        ),
        pytest.param(
            lambda c: c.set_has_read_seq(-1, ReadCause.SET),
            InvalidSeqError,
            {"seq": -1},
            id="set-negative",
        ),
        pytest.param(
            lambda c: c.mark_seqs_read([0]),
            InvalidSeqError,
            {"seq": 0},
            id="mark-zero",
        ),
    ],
)
def test_out_of_range_seq_rejects_whole_command(
    command: object, error_type: type[Exception], named: dict[str, int]
) -> None:
    conversation = bob_with_unread(5, 2)

    with pytest.raises(error_type) as raised:
        command(conversation)  # type: ignore[operator]

    for attribute, value in named.items():
        assert getattr(raised.value, attribute) == value
        assert str(value) in str(raised.value)
    assert conversation.collect_events() == []
    assert conversation.has_read_seq == 2
    assert conversation.unread_count == 3
    assert conversation.read_seqs_above == []


def test_rejected_position_then_new_message_counts() -> None:
    conversation = bob_with_unread(5, 5)

    with pytest.raises(SeqAboveMaxSeqError):
        conversation.set_has_read_seq(9, ReadCause.SET)
    conversation.pull(messages("A", 6))

    assert conversation.has_read_seq == 5
    assert conversation.unread_count == 1


def test_seqs_at_or_below_position_are_ignored() -> None:
    conversation = bob_with_unread(6, 4)

    changed = conversation.mark_seqs_read([1, 4])

    assert changed is False
    assert conversation.collect_events() == []
    assert conversation.unread_count == 2


# ---- rule 3: individual marks do not jump over unread gaps -----------------


@pytest.mark.parametrize(
    ("marks", "expected_position", "expected_unread", "expected_above"),
    [
        pytest.param([[7, 6, 5]], 7, 0, [], id="reverse-order-one-call"),
        pytest.param([[7], [6], [5]], 7, 0, [], id="reverse-order-one-by-one"),
        pytest.param([[5, 6, 7]], 7, 0, [], id="in-order-one-call"),
        pytest.param([[7]], 4, 2, [7], id="single-above-gap"),
        pytest.param([[5, 7]], 5, 1, [7], id="gap-at-six"),
        pytest.param([[6], [7]], 4, 1, [6, 7], id="gap-at-five"),
        pytest.param([[6, 7], [5]], 7, 0, [], id="gap-closed-later"),
    ],
)
def test_marks_advance_only_over_closed_runs(
    marks: list[list[int]],
    expected_position: int,
    expected_unread: int,
    expected_above: list[int],
) -> None:
    conversation = bob_with_unread(7, 4)

    for seqs in marks:
        conversation.mark_seqs_read(seqs)

    assert conversation.has_read_seq == expected_position
    assert conversation.unread_count == expected_unread
    assert conversation.read_seqs_above == expected_above


def test_mark_event_lists_only_newly_read_seqs() -> None:
    conversation = bob_with_unread(7, 4)
    conversation.mark_seqs_read([6])
    conversation.collect_events()

    conversation.mark_seqs_read([5, 6, 7])

    (event,) = conversation.collect_events()
    assert isinstance(event, Conversation.MessagesMarkedRead)
    assert event.seqs == [[5, 5], [7, 7]]
    assert event.senders == {"A": [[5, 5], [7, 7]]}
    assert event.has_read_seq == 7
    assert event.unread_count == 0


def test_unknown_seq_in_gap_blocks_advance() -> None:
    conversation = Conversation.start("B", "si_A_B")
    conversation.pull(messages("A", 5, 7))

    conversation.mark_seqs_read([7])

    assert conversation.has_read_seq == 0
    assert conversation.unread_count == 1
    assert conversation.unread_seqs == [5]


# ---- rule 4: set or mark up to N reads everything up to N ------------------


def test_mark_conversation_read_without_message_list() -> None:
    conversation = bob_with_unread(10, 8)

    conversation.set_has_read_seq(10, ReadCause.MARK_CONVERSATION_READ)

    assert conversation.has_read_seq == 10
    assert conversation.unread_count == 0
    (event,) = conversation.collect_events()
    assert isinstance(event, Conversation.HasReadSeqSet)
    assert event.previous_has_read_seq == 8
    assert event.cause == "mark_conversation_read"
    assert event.senders == {"A": [[9, 10]]}


def test_set_position_extends_over_read_run() -> None:
    conversation = bob_with_unread(8, 2)
    conversation.mark_seqs_read([5, 6])

    conversation.set_has_read_seq(4, ReadCause.SET)

    assert conversation.has_read_seq == 6
    assert conversation.unread_count == 2
    assert conversation.unread_seqs == [7, 8]


def test_set_position_skips_already_read_in_senders() -> None:
    conversation = bob_with_unread(6, 0)
    conversation.mark_seqs_read([3])
    conversation.collect_events()

    conversation.set_has_read_seq(6, ReadCause.SET)

    (event,) = conversation.collect_events()
    assert isinstance(event, Conversation.HasReadSeqSet)
    assert event.senders == {"A": [[1, 2], [4, 6]]}
    assert event.seqs == [[1, 2], [4, 6]]


def test_position_event_lists_newly_read_ranges() -> None:
    conversation = bob_with_unread(10, 2)
    conversation.mark_seqs_read([4, 6, 7, 9])
    conversation.collect_events()

    conversation.set_has_read_seq(8, ReadCause.SET)

    (event,) = conversation.collect_events()
    assert isinstance(event, Conversation.HasReadSeqSet)
    assert event.has_read_seq == 9
    assert event.seqs == [[3, 3], [5, 5], [8, 8]]
    assert event.senders == {"A": [[3, 3], [5, 5], [8, 8]]}


def test_huge_position_event_stays_small() -> None:
    conversation = Conversation.start("B", "sg_x")
    conversation.pull(messages("A", 10**18))

    conversation.set_has_read_seq(10**18, ReadCause.SET)

    read = conversation.collect_events()[-1]
    assert isinstance(read, Conversation.HasReadSeqSet)
    assert read.seqs == [[1, 10**18]]


# ---- rule 5: receiving one's own message reads up to it --------------------


def test_sender_reads_own_messages_receiver_does_not() -> None:
    alice = Conversation.start("A", "si_A_B")
    bob = Conversation.start("B", "si_A_B")

    alice.pull(messages("A", 1, 2, 3))
    bob.pull(messages("A", 1, 2, 3))

    assert alice.unread_count == 0
    assert alice.has_read_seq == 3
    assert bob.unread_count == 3
    assert bob.has_read_seq == 0


def test_own_message_reads_earlier_messages() -> None:
    conversation = bob_with_unread(2)

    conversation.pull(messages("B", 3))

    assert conversation.has_read_seq == 3
    assert conversation.unread_count == 0
    pulled, read = conversation.collect_events()
    assert isinstance(pulled, Conversation.MessagesPulled)
    assert isinstance(read, Conversation.HasReadSeqSet)
    assert read.cause == "own_message"
    assert read.previous_has_read_seq == 0
    assert read.senders == {"A": [[1, 2]]}


def test_own_message_then_later_peer_message_in_one_pull() -> None:
    conversation = Conversation.start("B", "si_A_B")

    conversation.pull([*messages("A", 1), *messages("B", 2), *messages("A", 3)])

    assert conversation.has_read_seq == 2
    assert conversation.unread_count == 1
    assert conversation.unread_seqs == [3]


# ---- rule 6: the unread count ----------------------------------------------


@pytest.mark.parametrize(
    ("pulls", "min_seq", "marks", "expected_unread"),
    [
        pytest.param([messages("A", 1, 2, 3)], 1, [], 3, id="all-from-peer"),
        pytest.param([messages("A", 1, 2, counts=False)], 1, [], 0, id="not-counting"),
        pytest.param(
            [messages("A", 1), messages("A", 2, counts=False)], 1, [], 1, id="mixed"
        ),
        pytest.param([messages("A", *range(1, 8))], 5, [], 3, id="below-min-seq"),
        pytest.param([messages("A", 1, 2, 3)], 1, [2], 2, id="individually-read"),
        pytest.param([messages("A", 1, 2, 3)], 1, [1, 2, 3], 0, id="all-read"),
        pytest.param([messages("A", 5)], 1, [], 1, id="gap-below-not-counted"),
    ],
)
def test_unread_count_formula(
    pulls: list[list[ReceivedMessage]],
    min_seq: int,
    marks: list[int],
    expected_unread: int,
) -> None:
    conversation = Conversation.start(
        "B", "team-chat", ConversationKind.GROUP, min_seq=min_seq
    )
    for pull in pulls:
        conversation.pull(pull)
    if marks:
        conversation.mark_seqs_read(marks)

    assert conversation.unread_count == expected_unread
    assert conversation.unread_count == len(conversation.unread_seqs)


# ---- rule 7: client message IDs --------------------------------------------


def test_mark_by_client_msg_id() -> None:
    conversation = bob_with_unread(3)

    conversation.mark_client_msg_ids_read(["A-2"])

    assert conversation.read_seqs_above == [2]
    assert conversation.unread_count == 2


def test_unknown_client_msg_id_rejects_command() -> None:
    conversation = bob_with_unread(3)

    with pytest.raises(UnknownClientMessageIdError) as raised:
        conversation.mark_client_msg_ids_read(["A-2", "nope"])

    assert raised.value.client_msg_ids == ["nope"]
    assert "'nope'" in str(raised.value)
    assert conversation.collect_events() == []
    assert conversation.unread_count == 3


def test_client_msg_id_below_position_uses_history() -> None:
    conversation = bob_with_unread(3, 2)

    assert conversation.unresolved_client_msg_ids(["A-1", "A-3"]) == ["A-1"]
    changed = conversation.mark_client_msg_ids_read(["A-1"], {"A-1": 1})

    assert changed is False
    assert conversation.collect_events() == []


def test_client_msg_id_reused_for_other_seq_rejected() -> None:
    conversation = bob_with_unread(3)
    reused = ReceivedMessage(4, "A", SENT_AT, client_msg_id="A-2")

    with pytest.raises(ClientMessageIdConflictError) as raised:
        conversation.pull([reused])

    assert raised.value.seq == 4
    assert raised.value.other_seq == 2
    assert conversation.max_seq == 3


# ---- rule 8: repeated commands change nothing ------------------------------


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(lambda c: c.pull(messages("A", 1, 2, 3)), id="pull"),
        pytest.param(lambda c: c.mark_seqs_read([3]), id="mark-seq"),
        pytest.param(lambda c: c.mark_client_msg_ids_read(["A-3"]), id="mark-id"),
        pytest.param(lambda c: c.set_has_read_seq(2, ReadCause.SET), id="set"),
    ],
)
def test_repeated_command_records_nothing(command: object) -> None:
    conversation = bob_with_unread(3)
    command(conversation)  # type: ignore[operator]
    conversation.collect_events()

    command(conversation)  # type: ignore[operator]

    assert conversation.collect_events() == []


def test_pull_reports_new_and_known_seqs() -> None:
    conversation = bob_with_unread(3, 1)

    outcome = conversation.pull(messages("A", 1, 3, 4, 4))

    assert outcome.new_seqs == [4]
    assert outcome.known_seqs == [1, 3, 4]
    assert conversation.max_seq == 4


# ---- conversation IDs and kinds --------------------------------------------


@pytest.mark.parametrize(
    ("owner", "conversation_id", "kind", "expected_kind", "expected_peer"),
    [
        pytest.param("B", "si_A_B", None, "single", "A", id="single-prefix"),
        pytest.param("A", "si_A_B", None, "single", "B", id="single-prefix-other"),
        pytest.param("B", "sg_team", None, "group", None, id="group-prefix"),
        pytest.param("B", "sn_B_sys", None, "notification", "sys", id="notification"),
        pytest.param(
            "B", "chat-1", ConversationKind.SINGLE, "single", None, id="explicit"
        ),
    ],
)
def test_kind_and_peer_from_id(
    owner: str,
    conversation_id: str,
    kind: ConversationKind | None,
    expected_kind: str,
    expected_peer: str | None,
) -> None:
    conversation = Conversation.start(owner, conversation_id, kind)

    assert conversation.kind == expected_kind
    assert conversation.peer_user_id == expected_peer


@pytest.mark.parametrize(
    ("owner", "conversation_id", "kind", "peer", "error_type"),
    [
        pytest.param(
            "B", "chat-1", None, None, ConversationKindRequiredError, id="no-kind"
        ),
        pytest.param(
            "B",
            "si_A_B",
            ConversationKind.GROUP,
            None,
            ConversationKindContradictsIdError,
            id="kind-contradicts-prefix",
        ),
        pytest.param("C", "si_A_B", None, None, NotAMemberError, id="not-a-member"),
        pytest.param(
            "B",
            "si_A_B",
            None,
            "C",
            ConversationKindContradictsIdError,
            id="wrong-peer",
        ),
        pytest.param(
            "B", "sg_x", None, "C", ConversationKindContradictsIdError, id="group-peer"
        ),
        pytest.param(
            "A", "si_B_A", None, None, InvalidConversationIdError, id="unsorted-pair"
        ),
        pytest.param(
            "A", "si_A", None, None, InvalidConversationIdError, id="one-member"
        ),
        pytest.param(
            "A", "si_A_", None, None, InvalidConversationIdError, id="empty-member"
        ),
        pytest.param(
            "A", "si_A_B_C", None, None, InvalidConversationIdError, id="three-members"
        ),
        pytest.param("..", "sg_x", None, None, InvalidUserIdError, id="dot-dot-user"),
        pytest.param(
            "A",
            "..",
            ConversationKind.GROUP,
            None,
            InvalidConversationIdError,
            id="dot-dot-conversation",
        ),
        pytest.param(
            "B", "a/b", None, None, InvalidConversationIdError, id="slash-in-id"
        ),
        pytest.param(
            "B", "a b", None, None, InvalidConversationIdError, id="space-in-id"
        ),
        pytest.param(
            "B", "x" * 129, None, None, InvalidConversationIdError, id="long-id"
        ),
        pytest.param(
            "B_C", "sg_x", None, None, InvalidUserIdError, id="underscore-user"
        ),
        pytest.param("", "sg_x", None, None, InvalidUserIdError, id="empty-user"),
    ],
)
def test_invalid_start_rejected(
    owner: str,
    conversation_id: str,
    kind: ConversationKind | None,
    peer: str | None,
    error_type: type[Exception],
) -> None:
    with pytest.raises(error_type):
        Conversation.start(owner, conversation_id, kind, peer)


def test_sender_outside_single_chat_rejected() -> None:
    conversation = Conversation.start("B", "si_A_B")

    with pytest.raises(NotAMemberError) as raised:
        conversation.pull(messages("mallory", 1))

    assert raised.value.user_id == "mallory"
    assert raised.value.members == ["B", "A"]
    assert conversation.collect_events()[1:] == []


@pytest.mark.parametrize(
    ("redelivered", "field"),
    [
        pytest.param(ReceivedMessage(2, "C", SENT_AT), "sender_id", id="other-sender"),
        pytest.param(
            ReceivedMessage(2, "A", SENT_AT, client_msg_id="other"),
            "client_msg_id",
            id="other-client-id",
        ),
    ],
)
def test_known_seq_with_other_content_rejected(
    redelivered: ReceivedMessage, field: str
) -> None:
    conversation = Conversation.start("B", "sg_x")
    conversation.pull(messages("A", 1, 2))
    conversation.collect_events()

    with pytest.raises(SeqConflictError) as raised:
        conversation.pull([redelivered])

    assert raised.value.seq == 2
    assert raised.value.field == field
    assert conversation.collect_events() == []


def test_redelivery_without_client_id_is_known() -> None:
    conversation = Conversation.start("B", "sg_x")
    conversation.pull(messages("A", 1, 2))

    outcome = conversation.pull([ReceivedMessage(2, "A", SENT_AT)])

    assert outcome.known_seqs == [2]


def test_max_seq_is_accepted() -> None:
    conversation = Conversation.start("B", "sg_x")

    conversation.pull(messages("A", MAX_SEQ))
    conversation.set_has_read_seq(MAX_SEQ, ReadCause.SET)

    assert conversation.has_read_seq == MAX_SEQ
    assert conversation.unread_count == 0


# ---- late messages ----------------------------------------------------------


def test_late_message_below_position_is_recorded_read() -> None:
    conversation = Conversation.start("B", "sg_x")
    conversation.pull(messages("A", 2))
    conversation.pull(messages("B", 3))
    conversation.collect_events()

    outcome = conversation.pull(messages("A", 1))

    assert outcome.new_seqs == [1]
    assert conversation.unread_count == 0
    (event,) = conversation.collect_events()
    assert isinstance(event, Conversation.MessagesPulled)
    assert event.read_on_arrival == [[1, 1]]
    assert conversation.pull(messages("A", 1)).known_seqs == [1]
    assert conversation.collect_events() == []


def test_message_marked_before_arrival_is_read() -> None:
    conversation = Conversation.start("B", "sg_x")
    conversation.pull(messages("A", 1, 3))
    conversation.mark_seqs_read([2])
    conversation.collect_events()

    conversation.pull(messages("A", 2))

    (event,) = conversation.collect_events()
    assert isinstance(event, Conversation.MessagesPulled)
    assert event.read_on_arrival == [[2, 2]]
    assert conversation.unread_count == 2
    assert conversation.unread_seqs == [1, 3]


def test_late_own_message_keeps_position() -> None:
    conversation = bob_with_unread(5, 5)

    conversation.pull(messages("B", 7))
    conversation.pull([ReceivedMessage(6, "B", SENT_AT)])

    assert conversation.has_read_seq == 7
    events = conversation.collect_events()
    assert [type(e).__name__ for e in events] == [
        "MessagesPulled",
        "HasReadSeqSet",
        "MessagesPulled",
    ]
