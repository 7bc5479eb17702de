"""Exceptions raised by application services, apart from domain rule violations."""

from __future__ import annotations


class ApplicationError(Exception):
    """Base class of application-level failures."""


class ConversationNotFoundError(ApplicationError):
    """No messages were ever recorded for this user in this conversation."""

    def __init__(self, owner_id: str, conversation_id: str) -> None:
        self.owner_id = owner_id
        self.conversation_id = conversation_id
        super().__init__(
            f"conversation {conversation_id!r} of user {owner_id!r} not found: "
            "record a received message first"
        )


class ConcurrencyConflictError(ApplicationError):
    """Other writers changed the aggregate on every retry of a command."""

    def __init__(self, owner_id: str, conversation_id: str, attempts: int) -> None:
        self.owner_id = owner_id
        self.conversation_id = conversation_id
        self.attempts = attempts
        super().__init__(
            f"conversation {conversation_id!r} of user {owner_id!r} was changed by "
            f"other writers during each of {attempts} attempts: retry the request"
        )


class ReadModelTimeoutError(ApplicationError):
    """A read model did not reach the requested log position in time."""

    def __init__(
        self, projection: str, min_position: int, position: int, timeout: float
    ) -> None:
        self.projection = projection
        self.min_position = min_position
        self.position = position
        self.timeout = timeout
        super().__init__(
            f"read model {projection!r} is at position {position} and did not "
            f"reach min_position {min_position} within {timeout:g} s: retry later"
        )


class UnknownProjectionError(ApplicationError):
    """A projection name that the service does not define."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(
            f"unknown projection {name!r}: use one of {', '.join(sorted(known))}"
        )


class CursorBeyondLogError(ApplicationError):
    """A stream cursor is beyond the newest event of the log."""

    def __init__(self, cursor: int, head: int) -> None:
        self.cursor = cursor
        self.head = head
        super().__init__(
            f"event ID {cursor} is beyond the end of the log at position {head}: "
            "resume with the ID of the last event received, or without one"
        )
