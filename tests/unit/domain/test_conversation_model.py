"""Random command sequences checked against a naive model of the rules.

The model keeps every message and every read seq forever and recounts unread
messages from scratch, so it shares no bookkeeping with the aggregate, which
keeps only the messages above its read position.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

import pytest
from eventsourcing.application import Application
from eventsourcing.persistence import Mapper

from domain.conversation import Conversation
from domain.errors import SeqAboveMaxSeqError
from domain.values import ConversationKind, ReadCause, ReceivedMessage

SENT_AT = datetime(2026, 1, 2, tzinfo=UTC)
OWNER = "me"
OTHERS = ["ann", "bo"]


@dataclass
class NaiveModel:
    min_seq: int
    messages: dict[int, tuple[str, bool]] = field(default_factory=dict)
    read: set[int] = field(default_factory=set)
    position: int = 0

    @property
    def max_seq(self) -> int:
        return max(self.messages, default=0)

    def pull(self, batch: list[ReceivedMessage]) -> None:
        # The first message of a seq wins; later ones with that seq are known.
        own = []
        for message in batch:
            if message.seq <= self.position or message.seq in self.messages:
                continue
            self.messages[message.seq] = (message.sender_id, message.counts_as_unread)
            if message.sender_id == OWNER:
                own.append(message.seq)
        if own:
            self.set_position(max(own))

    def mark(self, seqs: list[int]) -> None:
        self.read.update(seqs)
        self._extend()

    def set_position(self, seq: int) -> None:
        self.position = max(self.position, seq)
        self._extend()

    def _extend(self) -> None:
        while self.position + 1 in self.read:
            self.position += 1

    def unread(self) -> int:
        return sum(
            1
            for seq, (sender, counts) in self.messages.items()
            if counts
            and sender != OWNER
            and seq > self.position
            and seq >= self.min_seq
            and seq not in self.read
        )


def _random_step(
    rng: random.Random, conversation: Conversation, model: NaiveModel, next_seq: int
) -> int:
    action = rng.random()
    if action < 0.45:
        batch: list[ReceivedMessage] = []
        for _ in range(rng.randint(1, 4)):
            # Mostly new seqs, sometimes a gap, sometimes a repeat.
            seq = max(1, next_seq + rng.choice([0, 0, 0, 1, -3]))
            next_seq = max(next_seq, seq + 1)
            sender = rng.choice([OWNER, *OTHERS, *OTHERS, *OTHERS])
            counts = rng.random() > 0.1
            # A repeated seq is the same message again, from the same sender.
            same = [m for m in batch if m.seq == seq]
            if same:
                sender = same[0].sender_id
            elif seq in model.messages:
                sender = model.messages[seq][0]
            batch.append(ReceivedMessage(seq, sender, SENT_AT, None, counts))
        conversation.pull(batch)
        model.pull(batch)
    elif action < 0.8 and model.max_seq:
        seqs = [rng.randint(1, model.max_seq) for _ in range(rng.randint(1, 3))]
        conversation.mark_seqs_read(seqs)
        model.mark(seqs)
    elif model.max_seq:
        seq = rng.randint(0, model.max_seq + 2)
        if seq > model.max_seq:
            with pytest.raises(SeqAboveMaxSeqError):
                conversation.set_has_read_seq(seq, ReadCause.SET)
        else:
            conversation.set_has_read_seq(seq, ReadCause.SET)
            model.set_position(seq)
    return next_seq


@pytest.mark.parametrize("seed", range(40))
def test_random_commands_match_naive_model(seed: int) -> None:
    rng = random.Random(seed)
    min_seq = rng.choice([1, 1, 4])
    conversation = Conversation.start(
        OWNER, "sg_model", ConversationKind.GROUP, min_seq=min_seq
    )
    model = NaiveModel(min_seq=min_seq)
    next_seq = 1

    for step in range(120):
        next_seq = _random_step(rng, conversation, model, next_seq)

        assert conversation.unread_count == model.unread(), f"step {step}"
        assert conversation.has_read_seq == model.position, f"step {step}"
        assert conversation.max_seq == model.max_seq, f"step {step}"
        assert conversation.unread_count >= 0


@pytest.mark.parametrize("seed", range(10))
def test_replay_and_snapshot_reproduce_state(seed: int) -> None:
    rng = random.Random(seed)
    conversation = Conversation.start(OWNER, "sg_replay", ConversationKind.GROUP)
    model = NaiveModel(min_seq=1)
    next_seq = 1
    for _ in range(80):
        next_seq = _random_step(rng, conversation, model, next_seq)
    events = conversation.collect_events()

    replayed: Conversation | None = None
    for event in events:
        replayed = event.mutate(replayed)

    # A snapshot goes through the same JSON mapper as stored snapshots.
    mapper: Mapper[UUID] = Application[UUID]().mapper
    stored = mapper.to_stored_event(Conversation.Snapshot.take(conversation))
    restored = mapper.to_domain_event(stored).mutate(None)  # type: ignore[attr-defined]

    for other in (replayed, restored):
        assert isinstance(other, Conversation)
        assert other.version == conversation.version
        assert other.has_read_seq == conversation.has_read_seq
        assert other.unread_count == conversation.unread_count
        assert other.unread_seqs == conversation.unread_seqs
        assert other.read_seqs_above == conversation.read_seqs_above
        assert other.max_seq == conversation.max_seq
        assert vars(other) == vars(conversation)
