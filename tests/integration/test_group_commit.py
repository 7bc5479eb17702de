"""Group commit keeps each command's outcome its own, on a real event store.

The tests hold the committer (autostart off) until the commands under test
are queued, then commit them as one batch with `run_once`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from eventsourcing.persistence import IntegrityError

from application.commit import GroupCommitter
from domain.conversation import Conversation
from domain.errors import SeqAboveMaxSeqError
from domain.values import ConversationKind, ReadCause, ReceivedMessage
from infrastructure.bootstrap import Service, build_service
from infrastructure.settings import Settings

SENT_AT = datetime(2026, 7, 1, tzinfo=UTC)
QUEUE_TIMEOUT_SECONDS = 30.0


def messages(*seqs: int) -> list[ReceivedMessage]:
    return [ReceivedMessage(seq, "A", SENT_AT) for seq in seqs]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + QUEUE_TIMEOUT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.005)


def commit_all(committer: GroupCommitter, view: Conversation) -> int:
    return committer.commit(view.collect_events())


class Caller(threading.Thread):
    """Runs one command in its own thread and keeps its answer."""

    def __init__(self, command: Callable[[], Any]) -> None:
        super().__init__()
        self.command = command
        self.result: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.command()
        except BaseException as error:
            self.error = error


@pytest.fixture
def held(settings: Settings) -> Iterator[Service]:
    """A service whose committer commits only when the test says so."""
    service = build_service(settings)
    assert service.app.committer is not None
    service.app.committer.stop()
    service.app.committer = GroupCommitter(service.app, autostart=False)
    yield service
    service.app.committer = None
    service.close()


def test_batch_commits_others_around_failures(
    held: Service, settings: Settings
) -> None:
    app = held.app
    committer = app.committer
    assert committer is not None
    other_process = build_service(settings)
    try:
        other_process.app.record_messages("B", "sg_y", messages(1, 2, 3))
        stale = app.load("B", "sg_y")
        assert stale is not None
        other_process.app.mark_seqs_read("B", "sg_y", [1])
    finally:
        other_process.close()

    valid_x = Conversation.start("B", "sg_x", ConversationKind.GROUP)
    valid_x.pull(messages(1))
    stale.set_has_read_seq(3, ReadCause.SET)
    unencodable = Conversation.start("B", "sg_bad", ConversationKind.GROUP)
    unencodable.pull(messages(1))
    bad_events = unencodable.collect_events()
    object.__setattr__(bad_events[-1], "messages", [{"seq": {1, 2}}])
    valid_z = Conversation.start("B", "sg_z", ConversationKind.GROUP)
    valid_z.pull(messages(1, 2))

    callers = [
        Caller(lambda: committer.commit(valid_x.collect_events())),
        Caller(lambda: committer.commit(stale.collect_events())),
        Caller(lambda: committer.commit(bad_events)),
        Caller(lambda: committer.commit(valid_z.collect_events())),
    ]
    wait_until(lambda: committer.pending() == 4, "four units are queued")
    committed = committer.run_once()
    for caller in callers:
        caller.join(QUEUE_TIMEOUT_SECONDS)

    assert committed == 4
    assert committer.stats.batches == 1
    assert committer.stats.split_batches == 1
    assert isinstance(callers[0].result, int)
    assert isinstance(callers[1].error, IntegrityError)
    assert callers[2].error is not None
    assert not isinstance(callers[2].error, IntegrityError)
    assert isinstance(callers[3].result, int)
    assert app.get_conversation("B", "sg_x").max_seq == 1
    assert app.get_conversation("B", "sg_z").max_seq == 2
    assert app.get_conversation("B", "sg_y").has_read_seq == 1
    assert app.load("B", "sg_bad") is None


def test_batch_of_valid_units_is_one_transaction(held: Service) -> None:
    app = held.app
    committer = app.committer
    assert committer is not None
    views = []
    for index in range(5):
        view = Conversation.start("B", f"sg_room{index}", ConversationKind.GROUP)
        view.pull(messages(1, 2))
        views.append(view)

    callers = [Caller(partial(commit_all, committer, view)) for view in views]
    wait_until(lambda: committer.pending() == 5, "five units are queued")
    committer.run_once()
    for caller in callers:
        caller.join(QUEUE_TIMEOUT_SECONDS)

    positions = [caller.result for caller in callers]
    assert committer.stats.batches == 1
    assert committer.stats.split_batches == 0
    assert committer.stats.largest_batch == 5
    assert all(isinstance(position, int) for position in positions)
    assert len(set(positions)) == 5


def test_commands_in_one_batch_get_own_answers(
    held: Service, settings: Settings
) -> None:
    app = held.app
    committer = app.committer
    assert committer is not None
    for conversation in ("sg_x", "sg_y", "sg_w", "sg_z"):
        app.committer = None
        app.record_messages("B", conversation, messages(1, 2, 3, 4, 5))
        app.committer = committer

    valid = Caller(lambda: app.mark_seqs_read("B", "sg_x", [2]))
    rejected = Caller(lambda: app.set_has_read_seq("B", "sg_y", 99))
    conflicting = Caller(lambda: app.mark_seqs_read("B", "sg_w", [5]))
    other_valid = Caller(lambda: app.set_has_read_seq("B", "sg_z", 4))
    rejected.join(QUEUE_TIMEOUT_SECONDS)
    wait_until(lambda: committer.pending() == 3, "three commands are queued")

    other_process = build_service(settings)
    try:
        other_process.app.set_has_read_seq("B", "sg_w", 3)
    finally:
        other_process.close()
    committer.run_once()
    wait_until(lambda: committer.pending() == 1, "the conflicting command retries")
    committer.run_once()
    for caller in (valid, conflicting, other_valid):
        caller.join(QUEUE_TIMEOUT_SECONDS)

    assert isinstance(rejected.error, SeqAboveMaxSeqError)
    assert rejected.error.seq == 99
    assert valid.error is None
    assert valid.result.state.read_seqs_above == [2]
    assert conflicting.error is None
    assert conflicting.result.state.has_read_seq == 3
    assert conflicting.result.state.read_seqs_above == [5]
    assert other_valid.error is None
    assert other_valid.result.state.has_read_seq == 4
    assert committer.stats.split_batches == 1
    assert app.get_conversation("B", "sg_y").has_read_seq == 0
    assert app.get_conversation("B", "sg_w").read_seqs_above == [5]
