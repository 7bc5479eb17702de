"""Reader of the BYU Chit-Chat data set (one JSON object, optionally gzipped).

The file maps a chat UUID to `{"messages": [[utterance, ...], ...], ...}`,
where each inner list is one turn of consecutive utterances by one sender and
an utterance is `{"text", "timestamp", "sender"}`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from application.importing import ImportedConversation
from domain.errors import DomainError
from domain.values import ConversationKind, ReceivedMessage

CONVERSATION_ID_PREFIX = "chitchat-"


class DatasetFormatError(ValueError):
    """The file is not in the Chit-Chat format."""


def load_chitchat(path: Path) -> dict[str, Any]:
    """Read the whole data set; gzip is detected from the file's first bytes."""
    with path.open("rb") as raw:
        is_gzip = raw.read(2) == b"\x1f\x8b"
    opener = gzip.open if is_gzip else open
    try:
        with opener(path, "rt", encoding="utf-8") as file:
            data = json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError, EOFError, OSError) as error:
        msg = f"{path} is not a Chit-Chat JSON file: {error}"
        raise DatasetFormatError(msg) from error
    if not isinstance(data, dict):
        msg = f"{path} is not a Chit-Chat file: expected a JSON object of chats"
        raise DatasetFormatError(msg)
    return data


def chitchat_conversations(
    data: dict[str, Any], limit: int | None = None
) -> Iterator[ImportedConversation]:
    """Turn each chat into a single conversation between its senders.

    Seqs follow the utterance order; each turn is one delivery, so a reply
    turn shows that its sender read every earlier utterance.
    """
    for index, (chat_id, chat) in enumerate(data.items()):
        if limit is not None and index >= limit:
            return
        yield _conversation(chat_id, chat)


def _conversation(chat_id: str, chat: Any) -> ImportedConversation:
    try:
        turns = chat["messages"]
        members: list[str] = []
        deliveries: list[list[ReceivedMessage]] = []
        seq = 0
        for turn in turns:
            delivery = []
            for utterance in turn:
                seq += 1
                sender = utterance["sender"]
                if sender not in members:
                    members.append(sender)
                delivery.append(
                    ReceivedMessage(
                        seq=seq,
                        sender_id=sender,
                        sent_at=datetime.fromisoformat(utterance["timestamp"]),
                    )
                )
            if delivery:
                deliveries.append(delivery)
    except (KeyError, TypeError, ValueError, DomainError) as error:
        msg = f"chat {chat_id!r} is not in the Chit-Chat format: {error!r}"
        raise DatasetFormatError(msg) from error
    return ImportedConversation(
        conversation_id=CONVERSATION_ID_PREFIX + chat_id,
        kind=ConversationKind.SINGLE,
        members=members,
        deliveries=deliveries,
        source=f"chat {chat_id}",
    )
