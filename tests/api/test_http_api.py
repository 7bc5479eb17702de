"""REST API behaviour through FastAPI's TestClient, on each storage backend."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from api.app import MAX_BODY_BYTES, create_app
from infrastructure.settings import Settings

CONVERSATION = "/v1/users/{user}/conversations/{conversation}"
PROBLEM_TYPE = "application/problem+json"


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def url(user: str, conversation: str, suffix: str = "") -> str:
    return CONVERSATION.format(user=user, conversation=conversation) + suffix


def message(seq: int, sender: str = "A", **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "sender_id": sender, "sent_at": "2026-05-01T10:00:00Z", **extra}


def record(
    client: TestClient,
    user: str,
    conversation: str,
    *seqs: int,
    sender: str = "A",
    **body: Any,
) -> httpx.Response:
    response = client.post(
        url(user, conversation, "/messages"),
        json={"messages": [message(s, sender) for s in seqs], **body},
    )
    assert response.status_code == 200, response.text
    return response


def unread(client: TestClient, user: str, position: int) -> dict[str, Any]:
    response = client.get(
        f"/v1/users/{user}/unread",
        params={"min_position": position, "include_read": True},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_problem(
    response: httpx.Response, status: int, type_suffix: str
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_TYPE)
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"] == f"/problems/{type_suffix}"
    assert body["title"]
    assert body["detail"]
    return body


def test_position_above_max_seq_rejected_with_values(client: TestClient) -> None:
    record(client, "B", "si_A_B", 1, 2, 3, 4, 5)
    before = client.get(url("B", "si_A_B")).json()

    response = client.put(url("B", "si_A_B", "/has-read-seq"), json={"has_read_seq": 9})

    body = assert_problem(response, 422, "seq-above-max-seq")
    assert body["seq"] == 9
    assert body["max_seq"] == 5
    assert "9" in body["detail"]
    assert "5" in body["detail"]
    assert client.get(url("B", "si_A_B")).json()["version"] == before["version"]
    position = record(client, "B", "si_A_B", 6).json()["position"]
    assert unread(client, "B", position)["total_unread"] == 6


def test_huge_read_position_rejected_at_once(client: TestClient) -> None:
    record(client, "B", "si_A_B", *range(1, 11))

    response = client.put(
        url("B", "si_A_B", "/has-read-seq"), json={"has_read_seq": 10**18}
    )

    body = assert_problem(response, 422, "seq-above-max-seq")
    assert body["seq"] == 10**18
    assert body["max_seq"] == 10


def test_read_position_beyond_int64_names_value(client: TestClient) -> None:
    record(client, "B", "si_A_B", 1)

    response = client.put(
        url("B", "si_A_B", "/has-read-seq"), json={"has_read_seq": 2**63}
    )

    body = assert_problem(response, 422, "invalid-request")
    assert body["errors"][0]["input"] == 2**63
    assert body["errors"][0]["location"] == ["body", "has_read_seq"]


@pytest.mark.parametrize(
    "marks",
    [
        pytest.param([[7, 6, 5]], id="one-call"),
        pytest.param([[7], [6], [5]], id="one-by-one"),
    ],
)
def test_reverse_marks_over_http(client: TestClient, marks: list[list[int]]) -> None:
    record(client, "B", "si_A_B", *range(1, 8))
    client.put(url("B", "si_A_B", "/has-read-seq"), json={"has_read_seq": 4})

    for seqs in marks:
        response = client.post(url("B", "si_A_B", "/read-marks"), json={"seqs": seqs})
        assert response.status_code == 200, response.text

    body = response.json()
    assert body["conversation"]["has_read_seq"] == 7
    assert body["conversation"]["unread_count"] == 0
    assert unread(client, "B", body["position"])["total_unread"] == 0


def test_mark_read_up_to_seq(client: TestClient) -> None:
    record(client, "B", "si_A_B", *range(1, 11))
    client.put(url("B", "si_A_B", "/has-read-seq"), json={"has_read_seq": 8})

    response = client.post(url("B", "si_A_B", "/mark-read"), json={"up_to_seq": 10})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["conversation"]["unread_count"] == 0
    assert body["changed"] is True
    assert unread(client, "B", body["position"])["total_unread"] == 0


def test_stale_device_is_no_op_over_http(client: TestClient) -> None:
    record(client, "B", "si_A_B", *range(1, 11))
    first = client.post(url("B", "si_A_B", "/mark-read"), json={"up_to_seq": 8}).json()

    second = client.post(url("B", "si_A_B", "/mark-read"), json={"up_to_seq": 5}).json()

    assert second["changed"] is False
    assert second["conversation"]["has_read_seq"] == 8
    assert second["position"] == first["position"]
    assert second["conversation"]["version"] == first["conversation"]["version"]


def test_fan_out_to_sender_and_receiver(client: TestClient) -> None:
    for seq in (1, 2, 3):
        response = client.post(
            "/v1/conversations/si_A_B/messages",
            json={"message": message(seq, "A"), "recipients": ["A", "B"]},
        )
        assert response.status_code == 200, response.text
    position = response.json()["position"]

    assert unread(client, "A", position)["total_unread"] == 0
    assert unread(client, "B", position)["total_unread"] == 3
    conversation = client.get(url("A", "si_A_B")).json()
    assert conversation["has_read_seq"] == 3
    assert conversation["peer_user_id"] == "B"


def test_record_reports_new_and_known(client: TestClient) -> None:
    record(client, "B", "si_A_B", 1, 2)

    body = record(client, "B", "si_A_B", 2, 3).json()

    assert body["new_seqs"] == [3]
    assert body["known_seqs"] == [2]
    assert body["conversation"]["max_seq"] == 3


def test_mark_by_client_msg_id_and_unknown(client: TestClient) -> None:
    client.post(
        url("B", "si_A_B", "/messages"),
        json={
            "messages": [
                message(1, client_msg_id="m-1"),
                message(2, client_msg_id="m-2"),
            ]
        },
    )

    ok = client.post(
        url("B", "si_A_B", "/read-marks"), json={"client_msg_ids": ["m-2"]}
    )
    missing = client.post(
        url("B", "si_A_B", "/read-marks"), json={"client_msg_ids": ["m-1", "m-9"]}
    )

    assert ok.status_code == 200, ok.text
    assert ok.json()["conversation"]["read_seqs_above"] == [2]
    body = assert_problem(missing, 422, "unknown-client-msg-id")
    assert body["client_msg_ids"] == ["m-9"]
    assert "'m-9'" in body["detail"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "problem"),
    [
        pytest.param(
            "post",
            url("B", "si_A_B", "/read-marks"),
            {"seqs": [1]},
            404,
            "conversation-not-found",
            id="unknown-conversation",
        ),
        pytest.param(
            "get", url("B_x", "si_A_B"), None, 422, "invalid-id", id="bad-user-id"
        ),
        pytest.param(
            "post",
            url("C", "si_A_B", "/messages"),
            {"messages": [message(1)]},
            422,
            "not-a-member",
            id="not-member",
        ),
        pytest.param(
            "post",
            url("C", "chat-7", "/messages"),
            {"messages": [message(1)]},
            422,
            "conversation-kind-required",
            id="kind-required",
        ),
        pytest.param(
            "post",
            url("B", "si_A_B", "/messages"),
            {"messages": [message(0)]},
            422,
            "invalid-request",
            id="seq-zero",
        ),
        pytest.param(
            "post",
            url("B", "si_A_B", "/messages"),
            {"messages": []},
            422,
            "invalid-request",
            id="empty-messages",
        ),
        pytest.param(
            "post",
            url("B", "si_A_B", "/read-marks"),
            {"seqs": [1], "client_msg_ids": ["x"]},
            422,
            "invalid-request",
            id="both-lists",
        ),
        pytest.param("get", "/v1/nothing-here", None, 404, "not-found", id="no-route"),
        pytest.param(
            "delete",
            url("B", "si_A_B"),
            None,
            405,
            "method-not-allowed",
            id="bad-method",
        ),
    ],
)
def test_errors_are_problem_responses(
    client: TestClient,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    problem: str,
) -> None:
    response = client.request(method, path, json=body)

    assert_problem(response, status, problem)


def test_validation_problem_names_input(client: TestClient) -> None:
    response = client.post(
        url("B", "si_A_B", "/messages"),
        json={"messages": [message(1, sender="bad user")]},
    )

    body = assert_problem(response, 422, "invalid-request")
    assert body["errors"][0]["input"] == "bad user"
    assert body["errors"][0]["location"] == ["body", "messages", "0", "sender_id"]
    assert "bad user" in body["detail"]


def test_kind_mismatch_is_conflict(client: TestClient) -> None:
    record(client, "B", "chat-7", 1, kind="group")

    response = client.post(
        url("B", "chat-7", "/messages"),
        json={"messages": [message(2)], "kind": "single"},
    )

    body = assert_problem(response, 409, "conversation-kind-mismatch")
    assert body["stored"] == "group"
    assert body["requested"] == "single"


def test_oversized_body_rejected(client: TestClient) -> None:
    payload = b'{"messages": [' + b" " * (MAX_BODY_BYTES + 10) + b"]}"

    response = client.post(
        url("B", "si_A_B", "/messages"),
        content=payload,
        headers={"content-type": "application/json"},
    )

    body = assert_problem(response, 413, "request-too-large")
    assert body["limit"] == MAX_BODY_BYTES


def test_too_many_messages_rejected(client: TestClient) -> None:
    response = client.post(
        url("B", "si_A_B", "/messages"),
        json={"messages": [message(seq) for seq in range(1, 1002)]},
    )

    assert_problem(response, 422, "invalid-request")


def test_unread_list_pages_and_totals(client: TestClient) -> None:
    for index in range(5):
        position = record(client, "B", f"sg_room{index}", 1, 2, 3).json()["position"]

    first = client.get(
        "/v1/users/B/unread", params={"limit": 2, "min_position": position}
    ).json()
    second = client.get(
        "/v1/users/B/unread", params={"limit": 2, "cursor": first["next_cursor"]}
    ).json()

    assert first["total_unread"] == 15
    assert first["conversations_with_unread"] == 5
    assert [c["conversation_id"] for c in first["conversations"]] == [
        "sg_room0",
        "sg_room1",
    ]
    assert [c["conversation_id"] for c in second["conversations"]] == [
        "sg_room2",
        "sg_room3",
    ]
    assert first["position"] >= position


def test_admin_history_status_and_rebuild(client: TestClient) -> None:
    position = record(client, "B", "si_A_B", 1, 2).json()["position"]
    client.post(url("B", "si_A_B", "/read-marks"), json={"seqs": [1]})

    history = client.get("/v1/admin/users/B/conversations/si_A_B/history").json()
    rebuild = client.post("/v1/admin/projections/unread_counts/rebuild")
    after = unread(client, "B", position)
    status = client.get("/v1/admin/projections").json()
    unknown = client.post("/v1/admin/projections/nope/rebuild")

    assert [e["event_type"] for e in history["entries"]] == [
        "Started",
        "MessagesPulled",
        "MessagesMarkedRead",
    ]
    assert history["entries"][-1]["state"]["unread_count"] == 1
    assert rebuild.status_code == 202
    assert after["total_unread"] == 1
    assert status[0]["name"] == "unread_counts"
    assert_problem(unknown, 404, "projection-not-found")


def test_openapi_and_docs_served(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    docs = client.get("/docs")

    assert docs.status_code == 200
    assert (
        "/v1/users/{user_id}/conversations/{conversation_id}/has-read-seq"
        in schema["paths"]
    )
    assert "/v1/users/{user_id}/unread" in schema["paths"]
    problem = client.get("/problems/seq-above-max-seq").json()
    assert problem["status"] == 422


@pytest.mark.parametrize(
    ("content", "location"),
    [
        pytest.param(b'{"seqs": ["1"]}', ["body", "seqs", "0"], id="seq-as-string"),
        pytest.param(b'{"seqs": [1.0]}', ["body", "seqs", "0"], id="seq-as-float"),
        pytest.param(b'{"seqs": [true]}', ["body", "seqs", "0"], id="seq-as-bool"),
        pytest.param(
            b'{"client_msg_ids": ["a\\ud800"]}',
            ["body", "client_msg_ids", "0"],
            id="lone-surrogate",
        ),
        pytest.param(
            b'{"client_msg_ids": ["a\\u0000b"]}',
            ["body", "client_msg_ids", "0"],
            id="nul-character",
        ),
    ],
)
def test_read_marks_reject_lax_values(
    client: TestClient, content: bytes, location: list[str]
) -> None:
    record(client, "B", "si_A_B", 1)

    response = client.post(
        url("B", "si_A_B", "/read-marks"),
        content=content,
        headers={"content-type": "application/json"},
    )

    problem = assert_problem(response, 422, "invalid-request")
    assert problem["errors"][0]["location"] == location


def test_counts_as_unread_must_be_boolean(client: TestClient) -> None:
    response = client.post(
        url("B", "si_A_B", "/messages"),
        json={"messages": [message(1, counts_as_unread="no")]},
    )

    problem = assert_problem(response, 422, "invalid-request")
    assert problem["errors"][0]["input"] == "no"


def test_nan_in_body_is_named(client: TestClient) -> None:
    response = client.post(
        url("B", "si_A_B", "/read-marks"),
        content=b'{"seqs": [NaN]}',
        headers={"content-type": "application/json"},
    )

    problem = assert_problem(response, 422, "invalid-request")
    assert problem["errors"][0]["input"] == "nan"


@pytest.mark.parametrize(
    ("content", "problem_type"),
    [
        pytest.param(b'{"seqs": [1', "malformed-body", id="truncated-json"),
        pytest.param(b'{"seqs": "\xff"}', "malformed-body", id="invalid-utf8"),
    ],
)
def test_unparseable_body_is_bad_request(
    client: TestClient, content: bytes, problem_type: str
) -> None:
    response = client.post(
        url("B", "si_A_B", "/read-marks"),
        content=content,
        headers={"content-type": "application/json"},
    )

    assert_problem(response, 400, problem_type)


def test_non_json_body_is_unsupported(client: TestClient) -> None:
    response = client.post(
        url("B", "si_A_B", "/read-marks"),
        content=b"seqs=1",
        headers={"content-type": "text/plain"},
    )

    body = assert_problem(response, 415, "unsupported-media-type")
    assert "text/plain" in body["detail"]


def test_chunked_oversized_body_rejected(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"messages": ['
        for _ in range(40):
            yield b" " * 32_768
        yield b"]}"

    response = client.post(
        url("B", "si_A_B", "/messages"),
        content=chunks(),
        headers={"content-type": "application/json"},
    )

    assert_problem(response, 413, "request-too-large")


@pytest.mark.parametrize(
    ("params", "expected_status"),
    [
        pytest.param(
            {"until_time": "2999-01-01T00:00:00"}, 200, id="naive-time-is-utc"
        ),
        pytest.param({"until_version": 2**63}, 422, id="version-beyond-int64"),
    ],
)
def test_history_bounds(
    client: TestClient, params: dict[str, Any], expected_status: int
) -> None:
    record(client, "B", "si_A_B", 1)

    response = client.get(
        "/v1/admin/users/B/conversations/si_A_B/history", params=params
    )

    assert response.status_code == expected_status, response.text


def test_invalid_cursor_is_rejected(client: TestClient) -> None:
    response = client.get("/v1/users/B/unread", params={"cursor": "a\x00b"})

    assert_problem(response, 422, "invalid-request")


def test_unknown_route_names_path(client: TestClient) -> None:
    response = client.get("/v1/users//conversations/x")

    body = assert_problem(response, 404, "not-found")
    assert "/v1/users//conversations/x" in body["detail"]


def test_feed_and_readers_over_http(client: TestClient) -> None:
    for seq, sender in ((1, "A"), (2, "B")):
        response = client.post(
            "/v1/conversations/sg_team/messages",
            json={"message": message(seq, sender), "recipients": ["A", "B", "C"]},
        )
        assert response.status_code == 200, response.text
    read = client.put(url("C", "sg_team", "/has-read-seq"), json={"has_read_seq": 2})
    position = read.json()["position"]

    feed = client.get("/v1/users/A/receipts", params={"min_position": position}).json()
    paged = client.get(
        "/v1/users/A/receipts", params={"limit": 1, "min_position": position}
    ).json()
    readers = client.get(
        "/v1/conversations/sg_team/messages/1/readers",
        params={"min_position": position},
    ).json()
    missing = client.get("/v1/conversations/sg_team/messages/9/readers")

    kinds = [r["kind"] for r in feed["receipts"]]
    assert kinds == ["read_state", "group_read", "group_read"]
    # B's reply read message 1 before C read it.
    assert [r["reader_id"] for r in feed["receipts"]] == ["A", "B", "C"]
    assert feed["receipts"][2]["data"] == {"messages": [{"seq": 1, "read_count": 2}]}
    assert paged["next_after"] == feed["receipts"][0]["position"]
    assert readers["read_count"] == 2
    assert [r["user_id"] for r in readers["readers"]] == ["B", "C"]
    assert readers["not_read_by"] == []
    assert_problem(missing, 404, "group-message-not-found")
