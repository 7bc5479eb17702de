"""A snapshot written by one process loads in another one."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime

from domain.values import ReceivedMessage
from infrastructure.bootstrap import build_service
from infrastructure.settings import Settings


def test_fresh_process_loads_snapshot(database_url: str) -> None:
    service = build_service(Settings(database_url=database_url, snapshot_interval=3))
    try:
        for seq in range(1, 8):
            service.app.record_messages(
                "B", "sg_snap", [ReceivedMessage(seq, "A", datetime.now(UTC))]
            )
        assert service.app.snapshots is not None
        assert list(
            service.app.snapshots.get(service.app._aggregate_id("B", "sg_snap"))
        )
    finally:
        service.close()
    script = textwrap.dedent(
        f"""
        from infrastructure.bootstrap import build_service
        from infrastructure.settings import Settings
        service = build_service(Settings(database_url={database_url!r}))
        print(service.app.get_conversation("B", "sg_snap").unread_count)
        service.close()
        """
    )

    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "7"
