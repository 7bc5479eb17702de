"""The Conversation aggregate: one user's read state in one conversation.

Command methods check the rules and decide what changes; they trigger an
event only when something changed. Event `apply` methods only assign state,
because the library runs them again on every replay.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate
from eventsourcing.domain import Snapshot as LibrarySnapshot
from eventsourcing.utils import get_topic, register_topic

from domain.errors import (
    ClientMessageIdConflictError,
    ConversationKindContradictsIdError,
    ConversationKindMismatchError,
    ConversationKindRequiredError,
    InvalidSeqError,
    NotAMemberError,
    SeqAboveMaxSeqError,
    SeqConflictError,
    UnknownClientMessageIdError,
)
from domain.values import (
    MAX_SEQ,
    ConversationKind,
    ReadCause,
    ReceivedMessage,
    check_conversation_id,
    check_seq,
    check_user_id,
    iter_ranges,
    kind_from_prefix,
    merge_ranges,
    peer_from_pair_id,
    to_ranges,
)

# Fixed namespace of conversation aggregate IDs. Changing it orphans stored data.
CONVERSATION_NAMESPACE = UUID("6f1d2a8e-3c4b-5d6e-8f70-91a2b3c4d5e6")


def conversation_aggregate_id(owner_id: str, conversation_id: str) -> UUID:
    """Derive the aggregate ID of one user's view of one conversation.

    Neither ID may contain '/', so the joined name is unambiguous and every
    process finds the aggregate without a lookup.
    """
    return uuid5(CONVERSATION_NAMESPACE, f"{owner_id}/{conversation_id}")


class KnownMessage(NamedTuple):
    """A received message above the read position, as the rules need it."""

    sender_id: str
    client_msg_id: str | None
    counts_as_unread: bool


@dataclass(frozen=True)
class PullOutcome:
    """Seqs of one pull, split into newly recorded and already known.

    Seqs at or below the read position count as known: they are read already
    and are not recorded again.
    """

    new_seqs: list[int] = field(default_factory=list)
    known_seqs: list[int] = field(default_factory=list)


class Conversation(Aggregate):
    """One user's view of one conversation: received seqs and read position."""

    TOPIC = "readseq.Conversation"

    class Event(Aggregate.Event):
        """Base class of the conversation's events."""

    class Created(Aggregate.Created):
        """Placeholder the library derives for every aggregate; `Started` is used."""

        TOPIC = "readseq.Conversation.Created"

    class Started(Aggregate.Created):
        """The owner's view of the conversation began."""

        TOPIC = "readseq.Conversation.Started"
        owner_id: str
        conversation_id: str
        kind: str
        peer_user_id: str | None
        min_seq: int

        def apply(self, aggregate: Conversation) -> None:
            aggregate._apply_started(self)

    class MessagesPulled(Event):
        """Messages not known before reached the owner.

        `messages` holds `ReceivedMessage.to_event_dict()` values in seq order;
        `max_seq` and `unread_count` are the values after the pull.
        `read_on_arrival` are the ranges of those messages that the owner had
        read already: late ones at or below the read position, and ones marked
        read before they arrived.
        """

        TOPIC = "readseq.Conversation.MessagesPulled"
        class_version = 2
        messages: list[dict[str, Any]]
        max_seq: int
        unread_count: int
        read_on_arrival: list[list[int]]

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            # Version 1 recorded no message at or below the read position.
            state["read_on_arrival"] = []

        def apply(self, aggregate: Conversation) -> None:
            aggregate._apply_messages_pulled(self)

    class MessagesMarkedRead(Event):
        """The owner read individual seqs; only newly read seqs are listed.

        `seqs` are inclusive ranges. `senders` maps each other sender to the
        ranges of their known messages among them. `has_read_seq` and
        `unread_count` are the values after the mark.
        """

        TOPIC = "readseq.Conversation.MessagesMarkedRead"
        seqs: list[list[int]]
        senders: dict[str, list[list[int]]]
        has_read_seq: int
        unread_count: int

        def apply(self, aggregate: Conversation) -> None:
            aggregate._apply_messages_marked_read(self)

    class HasReadSeqSet(Event):
        """The read position moved forward from `previous_has_read_seq`.

        `seqs` are the ranges this move newly read: the seqs above the previous
        position up to the new one, except those read individually before.
        `senders` maps each other sender to the ranges of their known messages
        among them.
        """

        TOPIC = "readseq.Conversation.HasReadSeqSet"
        previous_has_read_seq: int
        has_read_seq: int
        cause: str
        seqs: list[list[int]]
        senders: dict[str, list[list[int]]]
        unread_count: int

        def apply(self, aggregate: Conversation) -> None:
            aggregate._apply_has_read_seq_set(self)

    class Snapshot(LibrarySnapshot):
        """Snapshot whose state is plain JSON (seq keys become lists)."""

        TOPIC = "readseq.Conversation.Snapshot"

        @classmethod
        def take(cls, aggregate: Any) -> Conversation.Snapshot:
            assert isinstance(aggregate, Conversation)
            return cls(
                originator_id=aggregate.id,
                originator_version=aggregate.version,
                timestamp=cls.create_timestamp(),
                topic=get_topic(type(aggregate)),
                state=aggregate._snapshot_state(),
            )

        def mutate(self, _: None) -> Conversation:
            return Conversation._from_snapshot_state(
                self.originator_id, self.originator_version, self.state
            )

    # ---- commands ----------------------------------------------------------

    @classmethod
    def start(
        cls,
        owner_id: str,
        conversation_id: str,
        kind: ConversationKind | None = None,
        peer_user_id: str | None = None,
        min_seq: int = 1,
    ) -> Conversation:
        """Start the owner's view, taking kind and peer from the ID's prefix.

        An `si_<a>_<b>` or `sn_<a>_<b>` ID names both members, so the owner
        must be one of them and the other one is the peer.
        """
        check_user_id(owner_id)
        check_conversation_id(conversation_id)
        check_seq(min_seq)
        if peer_user_id is not None:
            check_user_id(peer_user_id)

        prefixed_kind = kind_from_prefix(conversation_id)
        if kind is None:
            kind = prefixed_kind
        if kind is None:
            raise ConversationKindRequiredError(conversation_id)
        if prefixed_kind is not None and kind != prefixed_kind:
            raise ConversationKindContradictsIdError(
                conversation_id, "kind", prefixed_kind.value, kind.value
            )

        named_peer = None
        if prefixed_kind in (ConversationKind.SINGLE, ConversationKind.NOTIFICATION):
            named_peer = peer_from_pair_id(owner_id, conversation_id)
        if named_peer is not None and peer_user_id not in (None, named_peer):
            raise ConversationKindContradictsIdError(
                conversation_id, "peer_user_id", named_peer, str(peer_user_id)
            )
        if kind is ConversationKind.GROUP and peer_user_id is not None:
            raise ConversationKindContradictsIdError(
                conversation_id, "peer_user_id", None, peer_user_id
            )

        return cls._create(
            cls.Started,
            id=conversation_aggregate_id(owner_id, conversation_id),
            owner_id=owner_id,
            conversation_id=conversation_id,
            kind=kind.value,
            peer_user_id=peer_user_id or named_peer,
            min_seq=min_seq,
        )

    def check_matches(
        self,
        kind: ConversationKind | None,
        peer_user_id: str | None,
        min_seq: int | None = None,
    ) -> None:
        """Raise `ConversationKindMismatchError` if a given start fact differs."""
        if kind is not None and kind != self.kind:
            raise ConversationKindMismatchError(
                self.conversation_id, "kind", self.kind.value, kind.value
            )
        if peer_user_id is not None and peer_user_id != self.peer_user_id:
            raise ConversationKindMismatchError(
                self.conversation_id, "peer_user_id", self.peer_user_id, peer_user_id
            )
        if min_seq is not None and min_seq != self.min_seq:
            raise ConversationKindMismatchError(
                self.conversation_id, "min_seq", str(self.min_seq), str(min_seq)
            )

    def pull(self, messages: Sequence[ReceivedMessage]) -> PullOutcome:
        """Record the messages not known yet; own messages also read up to them.

        Receiving one's own message at seq s means the owner has read the
        conversation up to s, so the read position moves to at least s.
        """
        new: dict[int, ReceivedMessage] = {}
        known: list[int] = []
        client_ids = dict(self._client_ids)
        for message in messages:
            self._check_sender(message.sender_id)
            seq = message.seq
            earlier = self._messages.get(seq) or new.get(seq)
            if earlier is not None:
                self._check_same_message(seq, earlier, message)
                known.append(seq)
                continue
            if seq <= self.has_read_seq and self._received_below(seq):
                known.append(seq)
                continue
            if message.client_msg_id is not None:
                other_seq = client_ids.get(message.client_msg_id)
                if other_seq is not None:
                    raise ClientMessageIdConflictError(
                        message.client_msg_id, seq, other_seq, self.conversation_id
                    )
                client_ids[message.client_msg_id] = seq
            new[seq] = message
        outcome = PullOutcome(new_seqs=sorted(new), known_seqs=known)
        if not new:
            return outcome

        newly_unread = sum(
            1
            for message in new.values()
            if self._counts_as_unread(
                message.seq, message.sender_id, message.counts_as_unread
            )
        )
        self.trigger_event(
            self.MessagesPulled,
            messages=[new[seq].to_event_dict() for seq in outcome.new_seqs],
            max_seq=max(self.max_seq, outcome.new_seqs[-1]),
            unread_count=self.unread_count + newly_unread,
            read_on_arrival=to_ranges(
                seq
                for seq in new
                if seq <= self.has_read_seq or seq in self._read_above
            ),
        )

        own_seqs = [seq for seq, m in new.items() if m.sender_id == self.owner_id]
        if own_seqs and max(own_seqs) > self.has_read_seq:
            self._advance_read_position(max(own_seqs), ReadCause.OWN_MESSAGE)
        return outcome

    def mark_seqs_read(self, seqs: Iterable[int]) -> bool:
        """Mark individual seqs read; return whether anything was newly read.

        Marking a seq does not read the unread seqs below it. The read position
        advances only over an unbroken run of read seqs right above it.
        """
        requested = set(seqs)
        self._check_within_max_seq(requested)
        newly_read = sorted(
            seq
            for seq in requested
            if seq > self.has_read_seq and seq not in self._read_above
        )
        if not newly_read:
            return False

        position = self.has_read_seq
        read = self._read_above.union(newly_read)
        while position + 1 in read:
            position += 1

        senders: dict[str, list[int]] = {}
        no_longer_unread = 0
        for seq in newly_read:
            message = self._messages.get(seq)
            if message is None:
                continue
            if message.sender_id != self.owner_id:
                senders.setdefault(message.sender_id, []).append(seq)
            if self._counts_as_unread(seq, message.sender_id, message.counts_as_unread):
                no_longer_unread += 1

        self.trigger_event(
            self.MessagesMarkedRead,
            seqs=to_ranges(newly_read),
            senders={sender: to_ranges(s) for sender, s in senders.items()},
            has_read_seq=position,
            unread_count=self.unread_count - no_longer_unread,
        )
        return True

    def unresolved_client_msg_ids(self, client_msg_ids: Iterable[str]) -> list[str]:
        """List the client message IDs that are not among the unread messages.

        Messages at or below the read position are not kept in memory, so the
        caller looks these up in the recorded history.
        """
        return [cid for cid in client_msg_ids if cid not in self._client_ids]

    def mark_client_msg_ids_read(
        self,
        client_msg_ids: Sequence[str],
        earlier_seqs: Mapping[str, int] | None = None,
    ) -> bool:
        """Mark messages read by client message ID; return whether any was new.

        `earlier_seqs` resolves IDs of messages at or below the read position,
        found in the recorded history. Any ID resolved by neither rejects the
        whole command.
        """
        earlier_seqs = earlier_seqs or {}
        seqs: list[int] = []
        unknown: list[str] = []
        for client_msg_id in client_msg_ids:
            seq = self._client_ids.get(client_msg_id, earlier_seqs.get(client_msg_id))
            if seq is None:
                unknown.append(client_msg_id)
            else:
                seqs.append(seq)
        if unknown:
            raise UnknownClientMessageIdError(unknown, self.conversation_id)
        return self.mark_seqs_read(seqs)

    def set_has_read_seq(self, has_read_seq: int, cause: ReadCause) -> bool:
        """Read everything up to `has_read_seq`; return whether the position moved.

        A value at or below the current position changes nothing. A value above
        `max_seq` is rejected before any work that depends on its size.
        """
        if not 0 <= has_read_seq <= MAX_SEQ:
            raise InvalidSeqError(has_read_seq)
        if has_read_seq > self.max_seq:
            raise SeqAboveMaxSeqError(has_read_seq, self.max_seq, self.conversation_id)
        if has_read_seq <= self.has_read_seq:
            return False
        self._advance_read_position(has_read_seq, cause)
        return True

    # ---- queries -----------------------------------------------------------

    @property
    def read_seqs_above(self) -> list[int]:
        """Seqs above the read position that were read individually, sorted."""
        return sorted(self._read_above)

    @property
    def known_message_count(self) -> int:
        """Number of received messages kept in memory (those above the position)."""
        return len(self._messages)

    @property
    def unread_seqs(self) -> list[int]:
        """Seqs of the known messages that count as unread, sorted."""
        return sorted(
            seq
            for seq, message in self._messages.items()
            if self._counts_as_unread(seq, message.sender_id, message.counts_as_unread)
        )

    # ---- decisions shared by commands --------------------------------------

    def _counts_as_unread(self, seq: int, sender_id: str, counts: bool) -> bool:
        return (
            counts
            and sender_id != self.owner_id
            and seq > self.has_read_seq
            and seq >= self.min_seq
            and seq not in self._read_above
        )

    def _received_below(self, seq: int) -> bool:
        # Ranges of seqs received at or below the read position, sorted.
        index = bisect_right(self._received, [seq, MAX_SEQ]) - 1
        return (
            index >= 0 and self._received[index][0] <= seq <= self._received[index][1]
        )

    def _check_sender(self, sender_id: str) -> None:
        # A single chat with a known peer has exactly two possible senders.
        if self.peer_user_id is None or self.kind is ConversationKind.GROUP:
            return
        members = (self.owner_id, self.peer_user_id)
        if sender_id not in members:
            raise NotAMemberError(sender_id, self.conversation_id, members)

    def _check_same_message(
        self,
        seq: int,
        earlier: KnownMessage | ReceivedMessage,
        message: ReceivedMessage,
    ) -> None:
        # Only messages above the read position are kept, so a redelivery at or
        # below it cannot be compared and counts as known.
        if earlier.sender_id != message.sender_id:
            raise SeqConflictError(
                seq,
                "sender_id",
                earlier.sender_id,
                message.sender_id,
                self.conversation_id,
            )
        if (
            message.client_msg_id is not None
            and earlier.client_msg_id != message.client_msg_id
        ):
            raise SeqConflictError(
                seq,
                "client_msg_id",
                earlier.client_msg_id,
                message.client_msg_id,
                self.conversation_id,
            )

    def _check_within_max_seq(self, seqs: Iterable[int]) -> None:
        for seq in sorted(seqs):
            check_seq(seq)
        too_high = [seq for seq in seqs if seq > self.max_seq]
        if too_high:
            raise SeqAboveMaxSeqError(max(too_high), self.max_seq, self.conversation_id)

    def _advance_read_position(self, target: int, cause: ReadCause) -> None:
        position = target
        while position + 1 in self._read_above:
            position += 1

        senders: dict[str, list[int]] = {}
        no_longer_unread = 0
        for seq, message in self._messages.items():
            if seq > position or seq in self._read_above:
                continue
            if message.sender_id != self.owner_id:
                senders.setdefault(message.sender_id, []).append(seq)
            if self._counts_as_unread(seq, message.sender_id, message.counts_as_unread):
                no_longer_unread += 1

        self.trigger_event(
            self.HasReadSeqSet,
            previous_has_read_seq=self.has_read_seq,
            has_read_seq=position,
            cause=cause.value,
            seqs=self._ranges_not_read_before(position),
            senders={sender: to_ranges(s) for sender, s in senders.items()},
            unread_count=self.unread_count - no_longer_unread,
        )

    def _ranges_not_read_before(self, position: int) -> list[list[int]]:
        # The gaps between individually read seqs, so the work is bounded by
        # their number and never by the width of the range.
        ranges: list[list[int]] = []
        start = self.has_read_seq + 1
        for seq in sorted(s for s in self._read_above if s <= position):
            if seq > start:
                ranges.append([start, seq - 1])
            start = seq + 1
        if start <= position:
            ranges.append([start, position])
        return ranges

    # ---- state changes (apply code: assign only, never validate) ----------

    def _apply_started(self, event: Conversation.Started) -> None:
        # State is declared here, not as class annotations, because the library
        # turns class annotations of an aggregate into constructor arguments.
        self.owner_id: str = event.owner_id
        self.conversation_id: str = event.conversation_id
        self.kind = ConversationKind(event.kind)
        self.peer_user_id: str | None = event.peer_user_id
        self.min_seq: int = event.min_seq
        self.max_seq = 0
        self.has_read_seq = 0
        self.unread_count = 0
        self._messages: dict[int, KnownMessage] = {}
        # Ranges of the seqs received at or below has_read_seq, which are no
        # longer kept as messages; a gap is a message that has not arrived.
        self._received: list[list[int]] = []
        # Seqs above has_read_seq that were read individually.
        self._read_above: set[int] = set()
        self._client_ids: dict[str, int] = {}

    def _apply_messages_pulled(self, event: Conversation.MessagesPulled) -> None:
        late = []
        for data in event.messages:
            seq = data["seq"]
            if seq <= self.has_read_seq:
                late.append(seq)
                continue
            self._messages[seq] = KnownMessage(
                data["sender_id"], data["client_msg_id"], data["counts_as_unread"]
            )
            if data["client_msg_id"] is not None:
                self._client_ids[data["client_msg_id"]] = seq
        if late:
            self._received = merge_ranges(self._received, late)
        self.max_seq = event.max_seq
        self.unread_count = event.unread_count

    def _apply_messages_marked_read(
        self, event: Conversation.MessagesMarkedRead
    ) -> None:
        self._read_above.update(iter_ranges(event.seqs))
        self._move_read_position(event.has_read_seq)
        self.unread_count = event.unread_count

    def _apply_has_read_seq_set(self, event: Conversation.HasReadSeqSet) -> None:
        self._move_read_position(event.has_read_seq)
        self.unread_count = event.unread_count

    def _move_read_position(self, has_read_seq: int) -> None:
        if has_read_seq <= self.has_read_seq:
            return
        self.has_read_seq = has_read_seq
        # Messages at or below the position are read; only the seqs above matter.
        passed = [seq for seq in self._messages if seq <= has_read_seq]
        for seq in passed:
            client_msg_id = self._messages.pop(seq).client_msg_id
            if client_msg_id is not None:
                self._client_ids.pop(client_msg_id, None)
        if passed:
            self._received = merge_ranges(self._received, passed)
        self._read_above = {seq for seq in self._read_above if seq > has_read_seq}

    # ---- snapshots ---------------------------------------------------------

    def _snapshot_state(self) -> dict[str, Any]:
        return {
            "created_on": self.created_on,
            "modified_on": self.modified_on,
            "owner_id": self.owner_id,
            "conversation_id": self.conversation_id,
            "kind": self.kind.value,
            "peer_user_id": self.peer_user_id,
            "min_seq": self.min_seq,
            "max_seq": self.max_seq,
            "has_read_seq": self.has_read_seq,
            "unread_count": self.unread_count,
            "messages": [[seq, *message] for seq, message in self._messages.items()],
            "read_above": to_ranges(self._read_above),
            "received": self._received,
        }

    @classmethod
    def _from_snapshot_state(
        cls, aggregate_id: UUID, version: int, state: Mapping[str, Any]
    ) -> Conversation:
        conversation = object.__new__(cls)
        conversation.__base_init__(aggregate_id, version, state["created_on"])
        conversation.modified_on = _as_datetime(state["modified_on"])
        conversation.owner_id = state["owner_id"]
        conversation.conversation_id = state["conversation_id"]
        conversation.kind = ConversationKind(state["kind"])
        conversation.peer_user_id = state["peer_user_id"]
        conversation.min_seq = state["min_seq"]
        conversation.max_seq = state["max_seq"]
        conversation.has_read_seq = state["has_read_seq"]
        conversation.unread_count = state["unread_count"]
        conversation._messages = {
            seq: KnownMessage(sender_id, client_msg_id, counts)
            for seq, sender_id, client_msg_id, counts in state["messages"]
        }
        conversation._client_ids = {
            message.client_msg_id: seq
            for seq, message in conversation._messages.items()
            if message.client_msg_id is not None
        }
        conversation._read_above = set(iter_ranges(state["read_above"]))
        # Snapshots taken before these ranges existed treat every seq at or
        # below the position as received, which is what they did.
        has_read_seq = conversation.has_read_seq
        default = [[1, has_read_seq]] if has_read_seq > 0 else []
        conversation._received = [list(r) for r in state.get("received", default)]
        return conversation


# The library registers explicit topics of event classes when the aggregate
# class is defined, but not of its snapshot class. Without this, a process that
# has not taken a snapshot itself cannot resolve stored snapshots.
register_topic(Conversation.Snapshot.TOPIC, Conversation.Snapshot)


def _as_datetime(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
