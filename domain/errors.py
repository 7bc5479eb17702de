"""Exceptions raised when a command breaks a read-state rule."""

from __future__ import annotations

from collections.abc import Sequence


class DomainError(Exception):
    """Base class of every rule violation; nothing was recorded when it is raised."""


class InvalidUserIdError(DomainError):
    """A user ID is empty, too long or contains a character that is not allowed."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        super().__init__(
            f"invalid user ID {user_id!r}: use 1 to 64 letters, digits or '.-@:', "
            "but not '.' or '..' alone"
        )


class InvalidConversationIdError(DomainError):
    """A conversation ID cannot travel in a URL path or breaks its prefix's form."""

    def __init__(self, conversation_id: str, reason: str | None = None) -> None:
        self.conversation_id = conversation_id
        self.reason = reason or (
            "use 1 to 128 printable ASCII characters without whitespace, "
            "'/', '?' or '#', and not '.' or '..'"
        )
        super().__init__(f"invalid conversation ID {conversation_id!r}: {self.reason}")


class InvalidSeqError(DomainError):
    """A seq is outside 1 to 2**63 - 1."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        super().__init__(f"invalid seq {seq}: a seq is an integer from 1 to 2**63 - 1")


class SeqAboveMaxSeqError(DomainError):
    """A command names a seq that the owner has not received yet."""

    def __init__(self, seq: int, max_seq: int, conversation_id: str) -> None:
        self.seq = seq
        self.max_seq = max_seq
        self.conversation_id = conversation_id
        super().__init__(
            f"seq {seq} is above max_seq {max_seq} of conversation "
            f"{conversation_id!r}: record the message before marking it read, "
            f"or send a seq from 1 to {max_seq}"
        )


class UnknownClientMessageIdError(DomainError):
    """A client message ID does not belong to any message of the conversation."""

    def __init__(self, client_msg_ids: Sequence[str], conversation_id: str) -> None:
        self.client_msg_ids = list(client_msg_ids)
        self.conversation_id = conversation_id
        names = ", ".join(repr(client_msg_id) for client_msg_id in client_msg_ids)
        super().__init__(
            f"unknown client message ID {names} in conversation "
            f"{conversation_id!r}: record the message first or mark it by seq"
        )


class ClientMessageIdConflictError(DomainError):
    """One client message ID is given to two different seqs."""

    def __init__(
        self, client_msg_id: str, seq: int, other_seq: int, conversation_id: str
    ) -> None:
        self.client_msg_id = client_msg_id
        self.seq = seq
        self.other_seq = other_seq
        self.conversation_id = conversation_id
        super().__init__(
            f"client message ID {client_msg_id!r} is used by seq {other_seq} and "
            f"seq {seq} in conversation {conversation_id!r}: client message IDs "
            "must be unique within a conversation"
        )


class ConversationKindRequiredError(DomainError):
    """A new conversation's ID does not follow a known prefix and no kind is given."""

    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        super().__init__(
            f"the kind of conversation {conversation_id!r} is unknown: send kind "
            "'single', 'group' or 'notification', or use an ID that starts with "
            "'si_', 'sg_' or 'sn_'"
        )


class ConversationKindMismatchError(DomainError):
    """A command names a kind or peer that differs from the stored conversation's."""

    def __init__(
        self, conversation_id: str, field: str, stored: str | None, requested: str
    ) -> None:
        self.conversation_id = conversation_id
        self.field = field
        self.stored = stored
        self.requested = requested
        has = f"{field} {stored!r}" if stored is not None else f"no {field}"
        super().__init__(
            f"conversation {conversation_id!r} has {has}, not {requested!r}: "
            f"omit {field} or send the stored value"
        )


class ConversationKindContradictsIdError(DomainError):
    """A new conversation's kind or peer contradicts what its ID says."""

    def __init__(
        self, conversation_id: str, field: str, implied: str | None, requested: str
    ) -> None:
        self.conversation_id = conversation_id
        self.field = field
        self.implied = implied
        self.requested = requested
        implies = f"{field} {implied!r}" if implied is not None else f"no {field}"
        super().__init__(
            f"{field} {requested!r} contradicts conversation ID {conversation_id!r}, "
            f"which implies {implies}: omit {field} or send the implied value"
        )


class SeqConflictError(DomainError):
    """A known seq arrives again with a different sender or client message ID."""

    def __init__(
        self,
        seq: int,
        field: str,
        known: str | None,
        received: str | None,
        conversation_id: str,
    ) -> None:
        self.seq = seq
        self.field = field
        self.known = known
        self.received = received
        self.conversation_id = conversation_id
        super().__init__(
            f"seq {seq} of conversation {conversation_id!r} is known with {field} "
            f"{known!r}, not {received!r}: each seq is one message, so fix the "
            "sender of this delivery"
        )


class NotAMemberError(DomainError):
    """A user or sender is not one of the two members of a single chat."""

    def __init__(
        self, user_id: str, conversation_id: str, members: tuple[str, ...] = ()
    ) -> None:
        self.user_id = user_id
        self.conversation_id = conversation_id
        self.members = list(members)
        named = f" ({', '.join(members)})" if members else ""
        super().__init__(
            f"user {user_id!r} is not a member of conversation {conversation_id!r}"
            f"{named}: single chats have exactly two members"
        )
