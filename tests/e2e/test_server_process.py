"""The real `readseq serve` process on a free loopback port, driven over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

STARTUP_TIMEOUT_SECONDS = 30.0
READSEQ = str(Path(sys.executable).with_name("readseq"))


@dataclass
class RunningServer:
    base_url: str
    process: subprocess.Popen[str]
    workdir: Path

    def stop(self) -> str:
        """Stop with SIGTERM and return everything the process logged."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=30)
        return output


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("READSEQ_")}
    if database_url is not None:
        env["READSEQ_DATABASE_URL"] = database_url
    return env


def start_server(
    workdir: Path,
    database_url: str | None,
    *options: str,
    extra_env: dict[str, str] | None = None,
) -> RunningServer:
    port = free_port()
    env = clean_env(database_url) | (extra_env or {})
    process = subprocess.Popen(
        [READSEQ, "serve", "--port", str(port), *options],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = RunningServer(f"http://127.0.0.1:{port}", process, workdir)
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{server.stop()}")
        try:
            if httpx.get(f"{server.base_url}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.05)
    output = server.stop()
    pytest.fail(f"server did not answer within {STARTUP_TIMEOUT_SECONDS} s:\n{output}")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    running = start_server(tmp_path, database_url)
    yield running
    running.stop()


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def message(seq: int, sender: str) -> dict[str, Any]:
    return {"seq": seq, "sender_id": sender, "sent_at": "2026-05-01T10:00:00Z"}


def test_server_counts_reads_over_http(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for seq in range(1, 6):
            post(
                client,
                "/v1/conversations/si_alice_bob/messages",
                {"message": message(seq, "alice"), "recipients": ["alice", "bob"]},
            )
        post(
            client,
            "/v1/users/bob/conversations/si_alice_bob/read-marks",
            {"seqs": [1, 2]},
        )
        marked = post(
            client,
            "/v1/users/bob/conversations/si_alice_bob/mark-read",
            {"up_to_seq": 4},
        )
        bob = client.get(
            "/v1/users/bob/unread", params={"min_position": marked["position"]}
        ).json()
        alice = client.get(
            "/v1/users/alice/unread", params={"min_position": marked["position"]}
        ).json()

    assert marked["conversation"]["has_read_seq"] == 4
    assert bob["total_unread"] == 1
    assert bob["conversations"][0]["conversation_id"] == "si_alice_bob"
    assert bob["conversations"][0]["unread_count"] == 1
    assert alice["total_unread"] == 0
    output = server.stop()
    # uvicorn shuts down gracefully, then re-raises the signal it caught.
    assert server.process.returncode in (0, -signal.SIGTERM)
    assert "readseq started" in output
    assert "readseq stopped" in output


def test_default_database_is_sqlite_file_in_workdir(tmp_path: Path) -> None:
    running = start_server(tmp_path, None)
    try:
        health = httpx.get(f"{running.base_url}/health", timeout=5).json()
    finally:
        running.stop()

    assert health["database"] == "sqlite"
    assert (tmp_path / "readseq.db").is_file()


def test_workers_with_separate_projection_process(
    database_url: str, tmp_path: Path
) -> None:
    projections = subprocess.Popen(
        [READSEQ, "projections", "run"],
        cwd=tmp_path,
        env=clean_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    server = start_server(tmp_path, database_url, "--workers", "2", "--no-projections")
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            for seq in range(1, 4):
                recorded = post(
                    client,
                    "/v1/users/bob/conversations/sg_team/messages",
                    {"messages": [message(seq, "alice")]},
                )
            unread = client.get(
                "/v1/users/bob/unread", params={"min_position": recorded["position"]}
            )
    finally:
        server.stop()
        projections.send_signal(signal.SIGTERM)
        projection_log, _ = projections.communicate(timeout=30)

    assert unread.status_code == 200, unread.text
    assert unread.json()["total_unread"] == 3
    assert projections.returncode == 0
    if database_url.startswith("postgresql"):
        assert "listening for new events" in projection_log
    assert "projection unread_counts, receipts stopped" in projection_log


def test_waiting_queries_do_not_block_others(tmp_path: Path) -> None:
    server = start_server(
        tmp_path,
        f"sqlite:///{tmp_path / 'wait.db'}",
        "--no-projections",
        extra_env={"READSEQ_MAX_WAIT_SECONDS": "3"},
    )
    finished: list[str] = []
    lock = threading.Lock()

    def wait_for_unread(index: int) -> None:
        response = httpx.get(
            f"{server.base_url}/v1/users/u{index}/unread",
            params={"min_position": 10**6},
            timeout=30,
        )
        with lock:
            finished.append(f"wait {response.status_code}")

    waiters = [threading.Thread(target=wait_for_unread, args=(i,)) for i in range(40)]
    try:
        for thread in waiters:
            thread.start()
        health = httpx.get(f"{server.base_url}/health", timeout=30)
        with lock:
            finished.append(f"health {health.status_code}")
        for thread in waiters:
            thread.join(timeout=60)
    finally:
        server.stop()

    assert finished[0] == "health 200"
    assert finished.count("wait 503") == 40
