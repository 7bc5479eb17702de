"""Request and response models of the REST API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    model_validator,
)

from application.receipts import GroupReader, ReadersPage, Receipt
from application.results import (
    CommandResult,
    ConversationState,
    FanOutResult,
    HistoryEntry,
    ProjectionStatus,
    PullResult,
    UnreadConversation,
)
from domain.values import MAX_SEQ, USER_ID_PATTERN, ConversationKind

MAX_MESSAGES_PER_REQUEST = 1000
MAX_SEQS_PER_REQUEST = 1000
MAX_RECIPIENTS_PER_REQUEST = 1000
MAX_CLIENT_MSG_ID_LENGTH = 128
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100

# Strict: a seq is a JSON integer, never a string, float or boolean.
Seq = Annotated[
    StrictInt,
    Field(ge=1, le=MAX_SEQ, description="Sequence number, 1 to 2**63 - 1."),
]
UserId = Annotated[
    str,
    Field(
        # Pydantic searches for the pattern, so anchor it to match the whole ID.
        pattern=f"^{USER_ID_PATTERN.pattern}$",
        min_length=1,
        max_length=64,
        description="1 to 64 letters, digits or '.-@:'.",
        examples=["alice"],
    ),
]


def _check_storable_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and lone surrogates cannot be encoded.
    if "\x00" in value:
        msg = "must not contain the NUL character"
        raise ValueError(msg)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        msg = "must be valid Unicode (no lone surrogates)"
        raise ValueError(msg) from None
    return value


ClientMsgId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_CLIENT_MSG_ID_LENGTH),
    AfterValidator(_check_storable_text),
]


def _as_utc(value: datetime) -> datetime:
    # A time without a zone is taken as UTC, the zone of every stored time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


class MessageIn(BaseModel):
    """A message that reached a user's device or the message pipeline."""

    model_config = ConfigDict(extra="forbid")

    seq: Seq
    sender_id: UserId
    client_msg_id: ClientMsgId | None = None
    sent_at: Annotated[datetime, AfterValidator(_as_utc)] = Field(
        description="Send time; a time without a zone is taken as UTC."
    )
    counts_as_unread: bool = Field(
        True,
        strict=True,
        description="False for messages that never count, such as typing notices.",
    )


class RecordMessagesRequest(BaseModel):
    """Messages received by one user in one conversation."""

    model_config = ConfigDict(extra="forbid")

    messages: list[MessageIn] = Field(min_length=1, max_length=MAX_MESSAGES_PER_REQUEST)
    kind: ConversationKind | None = Field(
        None,
        description=(
            "Needed only for a new conversation whose ID does not start with "
            "si_, sg_ or sn_."
        ),
    )
    peer_user_id: UserId | None = Field(
        None,
        description="The other member of a single chat, if the ID does not name it.",
    )
    min_seq: Seq | None = Field(
        None,
        description=(
            "Lowest seq this user may see, for a member who joins a group later; "
            "set with the first message, default 1."
        ),
    )


class FanOutRequest(BaseModel):
    """One message to record for many recipients in one transaction."""

    model_config = ConfigDict(extra="forbid")

    message: MessageIn
    recipients: list[UserId] = Field(
        min_length=1, max_length=MAX_RECIPIENTS_PER_REQUEST
    )
    kind: ConversationKind | None = None


class ReadMarksRequest(BaseModel):
    """Messages read individually, named by seq or by client message ID."""

    model_config = ConfigDict(extra="forbid")

    seqs: list[Seq] | None = Field(None, min_length=1, max_length=MAX_SEQS_PER_REQUEST)
    client_msg_ids: list[ClientMsgId] | None = Field(
        None, min_length=1, max_length=MAX_SEQS_PER_REQUEST
    )

    @model_validator(mode="after")
    def _exactly_one_list(self) -> ReadMarksRequest:
        if (self.seqs is None) == (self.client_msg_ids is None):
            msg = "send exactly one of 'seqs' and 'client_msg_ids'"
            raise ValueError(msg)
        return self


class HasReadSeqRequest(BaseModel):
    """New read position: everything up to and including it is read."""

    model_config = ConfigDict(extra="forbid")

    has_read_seq: int = Field(strict=True, ge=0, le=MAX_SEQ)


class MarkReadRequest(BaseModel):
    """Mark the conversation read up to the seq the client has shown."""

    model_config = ConfigDict(extra="forbid")

    up_to_seq: int = Field(strict=True, ge=0, le=MAX_SEQ)


class ConversationPublic(BaseModel):
    """One user's read state in one conversation."""

    user_id: str
    conversation_id: str
    kind: ConversationKind
    peer_user_id: str | None
    max_seq: int
    min_seq: int
    has_read_seq: int
    unread_count: int
    read_seqs_above: list[int] = Field(
        description="Seqs above has_read_seq that were read individually."
    )
    version: int
    updated_at: datetime

    @classmethod
    def of(cls, state: ConversationState) -> ConversationPublic:
        """Convert an application state."""
        return cls(
            user_id=state.owner_id,
            conversation_id=state.conversation_id,
            kind=state.kind,
            peer_user_id=state.peer_user_id,
            max_seq=state.max_seq,
            min_seq=state.min_seq,
            has_read_seq=state.has_read_seq,
            unread_count=state.unread_count,
            read_seqs_above=state.read_seqs_above,
            version=state.version,
            updated_at=state.modified_on,
        )


class CommandResponse(BaseModel):
    """Effective state after a command and the log position to wait for."""

    conversation: ConversationPublic
    changed: bool = Field(description="False when the command was a no-op.")
    position: int = Field(
        description=(
            "Log position of the last recorded event, or the log head for a no-op; "
            "pass it as min_position to queries."
        )
    )

    @classmethod
    def of(cls, result: CommandResult) -> CommandResponse:
        """Convert an application result."""
        return cls(
            conversation=ConversationPublic.of(result.state),
            changed=result.changed,
            position=result.position,
        )


class RecordMessagesResponse(CommandResponse):
    """Which seqs were new and which were known already."""

    new_seqs: list[int]
    known_seqs: list[int] = Field(
        description="Seqs recorded before or at or below the read position."
    )

    @classmethod
    def of(cls, result: CommandResult) -> RecordMessagesResponse:
        """Convert an application result."""
        assert isinstance(result, PullResult)
        return cls(
            conversation=ConversationPublic.of(result.state),
            changed=result.changed,
            position=result.position,
            new_seqs=result.new_seqs,
            known_seqs=result.known_seqs,
        )


class FanOutRecipient(BaseModel):
    """Outcome of a fan-out for one recipient."""

    user_id: str
    new: bool
    has_read_seq: int
    unread_count: int


class FanOutResponse(BaseModel):
    """Outcome of a fan-out for every recipient."""

    recipients: list[FanOutRecipient]
    position: int

    @classmethod
    def of(cls, result: FanOutResult) -> FanOutResponse:
        """Convert an application result."""
        return cls(
            recipients=[
                FanOutRecipient(
                    user_id=r.state.owner_id,
                    new=bool(r.new_seqs),
                    has_read_seq=r.state.has_read_seq,
                    unread_count=r.state.unread_count,
                )
                for r in result.recipients
            ],
            position=result.position,
        )


class UnreadConversationPublic(BaseModel):
    """Unread count of one conversation, from the read model."""

    conversation_id: str
    kind: str
    max_seq: int
    has_read_seq: int
    unread_count: int
    updated_at: datetime

    @classmethod
    def of(cls, row: UnreadConversation) -> UnreadConversationPublic:
        """Convert a read-model row; its values are typed, so none is validated."""
        return cls.model_construct(
            conversation_id=row.conversation_id,
            kind=row.kind,
            max_seq=row.max_seq,
            has_read_seq=row.has_read_seq,
            unread_count=row.unread_count,
            updated_at=row.updated_at,
        )


class UnreadListResponse(BaseModel):
    """A user's unread totals and one page of per-conversation counts."""

    user_id: str
    total_unread: int
    conversations_with_unread: int
    conversations: list[UnreadConversationPublic]
    next_cursor: str | None = Field(
        description="Pass as cursor for the next page; null on the last page."
    )
    position: int = Field(description="Log position the read model had processed.")


class HistoryEntryPublic(BaseModel):
    """One recorded event and the state right after it."""

    version: int
    event_type: str
    recorded_at: datetime
    event: dict[str, Any]
    state: ConversationPublic

    @classmethod
    def of(cls, entry: HistoryEntry) -> HistoryEntryPublic:
        """Convert an application history entry."""
        return cls(
            version=entry.version,
            event_type=entry.event_type,
            recorded_at=entry.recorded_at,
            event=entry.event,
            state=ConversationPublic.of(entry.state),
        )


class HistoryResponse(BaseModel):
    """Audit history of one conversation."""

    user_id: str
    conversation_id: str
    entries: list[HistoryEntryPublic]
    next_after_version: int | None = Field(
        description="Pass as after_version for the next page; null on the last page."
    )


class ProjectionStatusPublic(BaseModel):
    """Progress of one projection."""

    name: str
    position: int
    head: int
    lag: int

    @classmethod
    def of(cls, status: ProjectionStatus) -> ProjectionStatusPublic:
        """Convert an application status."""
        return cls(
            name=status.name, position=status.position, head=status.head, lag=status.lag
        )


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; extension members name the offending values."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


class ReceiptPublic(BaseModel):
    """One notification of a user's receipt feed."""

    id: str = Field(description="Notification ID, derived from the causing event.")
    position: int = Field(
        description="Log position of the causing event; the feed's cursor."
    )
    kind: str = Field(description="read_state, peer_read or group_read.")
    conversation_id: str
    reader_id: str
    created_at: datetime
    data: dict[str, Any] = Field(
        description=(
            "read_state: has_read_seq, read_seqs (ranges), unread_count; "
            "peer_read: seqs (ranges of the recipient's messages); "
            "group_read: messages (seq and read_count after this read)."
        )
    )

    @classmethod
    def of(cls, receipt: Receipt) -> ReceiptPublic:
        """Convert a feed row."""
        return cls(
            id=str(receipt.notification_id),
            position=receipt.position,
            kind=receipt.kind,
            conversation_id=receipt.conversation_id,
            reader_id=receipt.reader_id,
            created_at=receipt.created_at,
            data=receipt.payload,
        )


class FeedResponse(BaseModel):
    """A page of a user's receipt feed."""

    user_id: str
    receipts: list[ReceiptPublic]
    next_after: int | None = Field(
        description="Pass as after for the next page; null when the page is the last."
    )
    position: int = Field(description="Log position the feed had processed.")


class ReaderPublic(BaseModel):
    """A member who read a group message, and when."""

    user_id: str
    read_at: datetime

    @classmethod
    def of(cls, reader: GroupReader) -> ReaderPublic:
        """Convert a readers row."""
        return cls(user_id=reader.reader_id, read_at=reader.read_at)


class ReadersResponse(BaseModel):
    """Read receipts of one group message."""

    conversation_id: str
    seq: int
    sender_id: str
    read_count: int
    readers: list[ReaderPublic]
    next_readers_after: str | None
    not_read_by: list[str] = Field(
        description="Members who could see the message and have not read it."
    )
    next_not_read_after: str | None

    @classmethod
    def of(cls, page: ReadersPage) -> ReadersResponse:
        """Convert an application page."""
        return cls(
            conversation_id=page.message.conversation_id,
            seq=page.message.seq,
            sender_id=page.message.sender_id,
            read_count=page.message.read_count,
            readers=[ReaderPublic.of(r) for r in page.readers],
            next_readers_after=page.next_readers_after,
            not_read_by=page.not_read_by,
            next_not_read_after=page.next_not_read_after,
        )
