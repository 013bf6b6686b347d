"""The access log's lines (engine/context.py AccessLog) on a real uvloop loop: the lines of one loop
iteration reach the log stream together, in order and in the router's log format, once the iteration
ends; `flush` writes what waits at once; without a running loop a line is written at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator

import uvloop

from shiftroute.engine.context import AccessLog

LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d INFO    shiftroute\.access: (.*)$")


class Stream:
    """A log stream that records each write call (the router's is stderr, one write(2) per call)."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def messages(self) -> list[str]:
        out = []
        for line in "".join(self.writes).splitlines():
            match = LINE.match(line)
            assert match, f"not in the log format: {line!r}"
            out.append(match.group(1))
        return out


@contextlib.contextmanager
def router_logging() -> Iterator[Stream]:
    """The root logger with one plain StreamHandler, as `shiftroute serve` sets it up. Entered inside the
    test body: pytest puts its capturing handlers back on the root logger for each phase of a test."""
    root = logging.getLogger()
    saved, saved_level = root.handlers[:], root.level
    recorder = Stream()
    root.handlers = [logging.StreamHandler(recorder)]  # type: ignore[arg-type]
    root.setLevel(logging.INFO)
    try:
        yield recorder
    finally:
        root.handlers = saved
        root.setLevel(saved_level)


def test_an_iterations_lines_are_written_together_after_it() -> None:
    async def main(stream: Stream) -> None:
        log = AccessLog()
        for n in range(5):
            log.write(f"request {n}")
        assert stream.writes == []  # the iteration has not ended
        await asyncio.sleep(0)  # it ends: the lines go out in one write
        assert len(stream.writes) == 1
        assert stream.messages() == [f"request {n}" for n in range(5)]
        log.write("next iteration")
        await asyncio.sleep(0)
        assert len(stream.writes) == 2
        assert stream.messages()[-1] == "next iteration"

    with router_logging() as stream:
        uvloop.run(asyncio.wait_for(main(stream), 10))


def test_flush_writes_what_waits_at_once() -> None:
    async def main(stream: Stream) -> None:
        log = AccessLog()
        log.write("last request before stopping")
        log.flush()
        assert stream.messages() == ["last request before stopping"]
        await asyncio.sleep(0)  # the scheduled write finds nothing left: no line twice
        assert stream.messages() == ["last request before stopping"]

    with router_logging() as stream:
        uvloop.run(asyncio.wait_for(main(stream), 10))


def test_without_a_running_loop_a_line_is_written_at_once() -> None:
    with router_logging() as stream:
        AccessLog().write("from a tool")
    assert stream.messages() == ["from a tool"]
