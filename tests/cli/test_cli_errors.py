"""Command-line errors: one clear message, a non-zero exit and no traceback."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest

READSEQ = str(Path(sys.executable).with_name("readseq"))


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [READSEQ, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "exit_code", "expected"),
    [
        pytest.param(
            ["--log-level", "BOGUS", "projections", "status"],
            2,
            "READSEQ_LOG_LEVEL='BOGUS'",
            id="bad-log-level",
        ),
        pytest.param(
            ["--database-url", "", "projections", "status"],
            2,
            "READSEQ_DATABASE_URL=''",
            id="empty-url",
        ),
        pytest.param(
            ["--database-url", "mysql://db/x", "projections", "status"],
            2,
            "unsupported database URL 'mysql://db/x'",
            id="bad-scheme",
        ),
        pytest.param(
            ["--database-url", "postgresql://postgres@127.0.0.1:1/test", "serve"],
            1,
            "127.0.0.1:1",
            id="unreachable-postgres",
        ),
        pytest.param(
            [
                "--database-url",
                "sqlite:////no-such-folder/x.db",
                "projections",
                "status",
            ],
            1,
            "folder /no-such-folder of SQLite database",
            id="missing-sqlite-folder",
        ),
        pytest.param(["serve", "--workers", "0"], 2, "'0'", id="zero-workers"),
        pytest.param(
            ["import", "chitchat", "missing.json.gz", "--limit", "0"],
            2,
            "'0'",
            id="zero-limit",
        ),
        pytest.param(
            ["audit", "B", "si_A_B", "--version", "1"],
            1,
            "not found",
            id="audit-missing-conversation",
        ),
        pytest.param(
            ["projections", "rebuild", "nope"],
            1,
            "unknown projection 'nope'",
            id="unknown-projection",
        ),
        pytest.param(
            ["import", "chitchat", "."], 1, "is not a regular file", id="import-folder"
        ),
    ],
)
def test_error_is_one_clear_message(
    tmp_path: Path, args: list[str], exit_code: int, expected: str
) -> None:
    completed = run(*args, cwd=tmp_path)

    assert completed.returncode == exit_code, completed.stderr
    assert expected in completed.stderr
    assert "Traceback" not in completed.stderr


def test_truncated_gzip_names_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json.gz"
    broken.write_bytes(gzip.compress(b'{"chat": {"messages": []}}')[:20])

    completed = run("import", "chitchat", str(broken), cwd=tmp_path)

    assert completed.returncode == 1
    assert str(broken) in completed.stderr
    assert "Traceback" not in completed.stderr


def test_sqlite_path_is_folder(tmp_path: Path) -> None:
    completed = run(
        "--database-url", f"sqlite:///{tmp_path}", "projections", "status", cwd=tmp_path
    )

    assert completed.returncode == 1
    assert "is a directory" in completed.stderr
