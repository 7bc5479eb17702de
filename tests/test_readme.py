"""The README's commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```sh\n(python3 -m venv .*?)\n```", text)


def test_readme_has_serve_and_test_commands() -> None:
    commands = readme_commands()

    assert len(commands) == 2
    assert commands[0].endswith("readseq serve")
    assert commands[1].endswith("pytest")


def test_ci_runs_readme_test_command() -> None:
    ci_script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")

    assert readme_commands()[1] in ci_script.splitlines()
