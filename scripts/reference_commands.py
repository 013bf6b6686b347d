"""Regenerate the command section of docs/reference.md from the commands' own --help.

python scripts/reference_commands.py          rewrite docs/reference.md
python scripts/reference_commands.py --check  exit 1 if it is out of date (the test suite runs this)
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from shiftroute.cli.main import cli

REFERENCE = Path(__file__).resolve().parent.parent / "docs" / "reference.md"
START = "## Commands\n"
END = "## Annotations\n"
WIDTH = 110


def _walk(command: click.Command, parent: click.Context | None, name: str) -> list[tuple[str, str]]:
    ctx = click.Context(
        command,
        info_name=name,
        parent=parent,
        terminal_width=WIDTH,
        max_content_width=WIDTH,
        help_option_names=["-h", "--help"],
    )
    out = [(ctx.command_path, command.get_help(ctx))]
    if isinstance(command, click.Group):
        for sub_name in sorted(command.list_commands(ctx)):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                out.extend(_walk(sub, ctx, sub_name))
    return out


def render() -> str:
    parts = [START]
    for path, text in _walk(cli, None, "shiftroute"):
        parts.append(f"\n### `{path}`\n\n```\n{text.rstrip()}\n```\n")
    return "".join(parts) + "\n"


def updated(document: str) -> str:
    start, end = document.index(START), document.index(END)
    return document[:start] + render() + document[end:]


def main() -> int:
    current = REFERENCE.read_text()
    wanted = updated(current)
    if "--check" in sys.argv[1:]:
        if wanted != current:
            print(f"{REFERENCE} is out of date: run `python scripts/reference_commands.py`", file=sys.stderr)
            return 1
        return 0
    REFERENCE.write_text(wanted)
    return 0


if __name__ == "__main__":
    sys.exit(main())
