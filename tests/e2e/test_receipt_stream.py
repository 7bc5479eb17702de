"""The live receipt stream of a real server: order, no loss and resume."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from tests.e2e.test_server_process import RunningServer, message, post, start_server

EVENT_TIMEOUT_SECONDS = 15.0


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    # A short heartbeat lets a closed test client notice it within a second.
    running = start_server(
        tmp_path, database_url, extra_env={"READSEQ_STREAM_HEARTBEAT_SECONDS": "1"}
    )
    yield running
    running.stop()


class StreamReader:
    """Reads server-sent events of one stream in a thread, into a queue."""

    def __init__(self, url: str, last_event_id: str | None = None) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.connected = threading.Event()
        self.stop = threading.Event()
        headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
        self.thread = threading.Thread(target=self._read, args=(url, headers))
        self.thread.start()
        assert self.connected.wait(EVENT_TIMEOUT_SECONDS), "stream did not open"

    def _read(self, url: str, headers: dict[str, str]) -> None:
        with httpx.stream("GET", url, headers=headers, timeout=None) as response:
            assert response.status_code == 200
            self.response = response
            self.connected.set()
            try:
                self._parse(response)
            except (httpx.HTTPError, httpx.StreamError, RuntimeError):
                # Closing the response from another thread ends the iteration.
                if not self.stop.is_set():
                    raise

    def _parse(self, response: httpx.Response) -> None:
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if self.stop.is_set():
                return
            if line == "":
                if "data" in fields:
                    self.events.put(
                        {
                            "id": fields["id"],
                            "event": fields["event"],
                            "data": json.loads(fields["data"]),
                        }
                    )
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value

    def take(self, count: int) -> list[dict[str, Any]]:
        return [self.events.get(timeout=EVENT_TIMEOUT_SECONDS) for _ in range(count)]

    def close(self) -> None:
        self.stop.set()
        self.response.close()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def feed_ids(
    client: httpx.Client, user: str, position: int, after: int = 0
) -> list[str]:
    page = client.get(
        f"/v1/users/{user}/receipts", params={"after": after, "min_position": position}
    ).json()
    return [str(receipt["position"]) for receipt in page["receipts"]]


def test_stream_delivers_once_in_order_and_resumes(server: RunningServer) -> None:
    stream_url = f"{server.base_url}/v1/users/A/receipts/stream"
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        reader = StreamReader(stream_url)
        for seq in (1, 2, 3):
            post(
                client,
                "/v1/conversations/si_A_B/messages",
                {"message": message(seq, "A"), "recipients": ["A", "B"]},
            )
        post(client, "/v1/users/B/conversations/si_A_B/read-marks", {"seqs": [1]})
        last = post(
            client, "/v1/users/B/conversations/si_A_B/mark-read", {"up_to_seq": 3}
        )
        expected = feed_ids(client, "A", last["position"])
        received = reader.take(len(expected))
        post(
            client,
            "/v1/conversations/si_A_B/messages",
            {"message": message(4, "A"), "recipients": ["A", "B"]},
        )
        reader.close()
        extra = list(reader.events.queue)

        missed_from = received[-1]["id"]
        post(
            client,
            "/v1/conversations/si_A_B/messages",
            {"message": message(5, "A"), "recipients": ["A", "B"]},
        )
        final = post(
            client, "/v1/users/B/conversations/si_A_B/mark-read", {"up_to_seq": 5}
        )
        missed = feed_ids(client, "A", final["position"], after=int(missed_from))
        resumed_reader = StreamReader(stream_url, last_event_id=missed_from)
        resumed = resumed_reader.take(len(missed))
        resumed_reader.close()

    assert len(expected) == 5
    assert [e["id"] for e in received] == expected
    assert [e["event"] for e in received] == [
        "read_state",
        "read_state",
        "read_state",
        "peer_read",
        "peer_read",
    ]
    assert received[3]["data"]["data"] == {"seqs": [[1, 1]]}
    assert received[4]["data"]["data"] == {"seqs": [[2, 3]]}
    assert len(missed) == 3
    assert [e["id"] for e in resumed] == missed
    assert all(int(e["id"]) > int(missed_from) for e in extra + resumed)
    assert resumed_reader.events.empty()


def test_shutdown_ends_open_streams(server: RunningServer) -> None:
    readers = [
        StreamReader(f"{server.base_url}/v1/users/idle{index}/receipts/stream")
        for index in range(5)
    ]

    output = server.stop()

    for reader in readers:
        reader.thread.join(timeout=10)
        assert not reader.thread.is_alive()
    assert "readseq stopped" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("headers", "params", "status"),
    [
        pytest.param({"Last-Event-ID": "999999"}, {}, 422, id="id-beyond-log"),
        pytest.param({"Last-Event-ID": "abc"}, {}, 422, id="id-not-numeric"),
        pytest.param({}, {"after": str(2**63)}, 422, id="after-beyond-int64"),
    ],
)
def test_stream_rejects_bad_cursors(
    server: RunningServer,
    headers: dict[str, str],
    params: dict[str, str],
    status: int,
) -> None:
    response = httpx.get(
        f"{server.base_url}/v1/users/A/receipts/stream",
        headers=headers,
        params=params,
        timeout=10,
    )

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_empty_last_event_id_counts_as_absent(server: RunningServer) -> None:
    reader = StreamReader(f"{server.base_url}/v1/users/A/receipts/stream", "")
    reader.close()
