"""The reference documents every command exactly as its --help describes it."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_reference_commands_match_their_help() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "reference_commands.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_readme_shows_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert "make demo" in readme and "make test" in readme
