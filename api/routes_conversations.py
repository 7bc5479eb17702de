"""Routes that record messages, mark reads and read one conversation's state."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.dependencies import (
    ConversationIdPath,
    MinPosition,
    ServiceDep,
    UserIdPath,
    json_response,
    problem_responses,
)
from api.models import (
    CommandResponse,
    ConversationPublic,
    FanOutRequest,
    FanOutResponse,
    HasReadSeqRequest,
    MarkReadRequest,
    MessageIn,
    ReadMarksRequest,
    RecordMessagesRequest,
    RecordMessagesResponse,
)
from domain.values import ReceivedMessage

router = APIRouter(prefix="/v1", tags=["conversations"])

CONVERSATION_PATH = "/users/{user_id}/conversations/{conversation_id}"


def _received(message: MessageIn) -> ReceivedMessage:
    return ReceivedMessage(
        seq=message.seq,
        sender_id=message.sender_id,
        sent_at=message.sent_at,
        client_msg_id=message.client_msg_id,
        counts_as_unread=message.counts_as_unread,
    )


@router.get(
    CONVERSATION_PATH,
    responses=problem_responses(404, 422),
)
def get_conversation(
    user_id: UserIdPath,
    conversation_id: ConversationIdPath,
    service: ServiceDep,
    min_position: MinPosition = 0,
) -> ConversationPublic:
    """Return one conversation's read state.

    The state is loaded from the event log itself, so it already includes
    every committed command and `min_position` needs no wait.
    """
    state = service.app.get_conversation(user_id, conversation_id)
    return ConversationPublic.of(state)


@router.post(
    CONVERSATION_PATH + "/messages",
    response_model=RecordMessagesResponse,
    responses=problem_responses(409, 413, 422),
)
async def record_messages(
    user_id: UserIdPath,
    conversation_id: ConversationIdPath,
    body: RecordMessagesRequest,
    service: ServiceDep,
) -> Response:
    """Record messages the user received; known seqs are reported, not re-recorded.

    The user's own messages also move the read position up to them.
    """
    result = await service.app.record_messages_async(
        user_id,
        conversation_id,
        [_received(m) for m in body.messages],
        kind=body.kind,
        peer_user_id=body.peer_user_id,
        min_seq=body.min_seq,
    )
    return json_response(RecordMessagesResponse.of(result))


@router.post(
    "/conversations/{conversation_id}/messages",
    response_model=FanOutResponse,
    responses=problem_responses(409, 413, 422),
)
async def fan_out_message(
    conversation_id: ConversationIdPath,
    body: FanOutRequest,
    service: ServiceDep,
) -> Response:
    """Record one message for every recipient in a single transaction."""
    result = await service.app.fan_out_async(
        conversation_id, _received(body.message), body.recipients, kind=body.kind
    )
    return json_response(FanOutResponse.of(result))


@router.post(
    CONVERSATION_PATH + "/read-marks",
    response_model=CommandResponse,
    responses=problem_responses(404, 409, 422),
)
async def mark_read(
    user_id: UserIdPath,
    conversation_id: ConversationIdPath,
    body: ReadMarksRequest,
    service: ServiceDep,
) -> Response:
    """Mark individual messages read, by seq or by client message ID.

    Marking a seq never reads the unread seqs below it; the read position
    advances over a run of read seqs that closes the gap above it.
    """
    if body.seqs is not None:
        result = await service.app.mark_seqs_read_async(
            user_id, conversation_id, body.seqs
        )
    else:
        assert body.client_msg_ids is not None
        result = await service.app.mark_client_msg_ids_read_async(
            user_id, conversation_id, body.client_msg_ids
        )
    return json_response(CommandResponse.of(result))


@router.put(
    CONVERSATION_PATH + "/has-read-seq",
    response_model=CommandResponse,
    responses=problem_responses(404, 409, 422),
)
async def set_has_read_seq(
    user_id: UserIdPath,
    conversation_id: ConversationIdPath,
    body: HasReadSeqRequest,
    service: ServiceDep,
) -> Response:
    """Move the read position forward; a lower or equal value changes nothing."""
    result = await service.app.set_has_read_seq_async(
        user_id, conversation_id, body.has_read_seq
    )
    return json_response(CommandResponse.of(result))


@router.post(
    CONVERSATION_PATH + "/mark-read",
    response_model=CommandResponse,
    responses=problem_responses(404, 409, 422),
)
async def mark_conversation_read(
    user_id: UserIdPath,
    conversation_id: ConversationIdPath,
    body: MarkReadRequest,
    service: ServiceDep,
) -> Response:
    """Mark the conversation read up to the seq the client has shown.

    The seq is required: a bare "read all" would also read messages that
    arrive while the request is in flight.
    """
    result = await service.app.mark_conversation_read_async(
        user_id, conversation_id, body.up_to_seq
    )
    return json_response(CommandResponse.of(result))
