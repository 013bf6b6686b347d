"""The head writer: compiled, http1.serialize_pieces copies the pieces into one bytes object in C
(protocol/head_bytes.pxd); as Python, head_bytes.serialize joins them. Both must give the same bytes as
the plain definition `first + (CRLF name: value)* + CRLF CRLF`, and refuse the same bad input."""

from __future__ import annotations

import pytest

from shiftroute.protocol import head_bytes, http1

Fields = list[tuple[bytes, bytes]]

CASES: list[tuple[list[bytes], Fields, Fields | None]] = [
    ([b"HTTP/1.1 200 ", b"OK"], [(b"Server", b"nginx"), (b"Content-Length", b"6")], None),
    ([b"GET / HTTP/1.1"], [], None),
    ([b"GET / HTTP/1.1"], [], []),
    ([b"X"], [(b"A", b"")], [(b"Set-Cookie", b"c=1; path=/; HttpOnly")]),
    ([b""], [(b"", b"")], [(b"", b"")]),
    ([b"HTTP/1.1 404 ", b"Not Found"], [(b"X-Long", b"v" * 70_000)], [(b"X-Bin", bytes(range(256)))]),
    ([b"a", b"b", b"c"], [(b"N%d" % i, b"%d" % i) for i in range(150)], [(b"Z", b"z")] * 3),
]


def plain(first: list[bytes], headers: Fields, added: Fields | None) -> bytes:
    out = b"".join(first)
    for name, value in headers + (added or []):
        out += b"\r\n" + name + b": " + value
    return out + b"\r\n\r\n"


@pytest.mark.parametrize(("first", "headers", "added"), CASES)
def test_both_writers_give_the_plain_definition(
    first: list[bytes], headers: Fields, added: Fields | None
) -> None:
    expected = plain(first, headers, added)
    assert http1.serialize_pieces(list(first), headers, added) == expected
    assert head_bytes.serialize(list(first), headers, added) == expected


def test_the_callers_lists_are_left_as_they_were() -> None:
    first, headers, added = [b"GET / HTTP/1.1"], [(b"A", b"1")], [(b"B", b"2")]
    http1.serialize_pieces(first, headers, added)
    assert (first, headers, added) == ([b"GET / HTTP/1.1"], [(b"A", b"1")], [(b"B", b"2")])


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ([(b"A", "text")], TypeError),  # a str value: no encoding is guessed
        ([(b"A", None)], TypeError),
        ([(b"A", b"1", b"2")], ValueError),  # not a (name, value) pair
        ([(None, b"1")], TypeError),
    ],
)
def test_both_writers_refuse_a_bad_field(headers: Fields, error: type[Exception]) -> None:
    with pytest.raises(error):
        http1.serialize_pieces([b"X"], headers)
    with pytest.raises(error):
        head_bytes.serialize([b"X"], headers, None)


def test_the_compiled_writer_is_the_one_tested_when_compiled() -> None:
    # The comparison above is only a comparison if http1 runs compiled (test_accel.py checks the build).
    from shiftroute import accel

    assert http1.__file__ is not None
    assert http1.__file__.endswith(".so") or accel.reason_for_sources or not accel.compiled_present()


def test_a_none_piece_of_the_first_line_is_refused() -> None:
    with pytest.raises(TypeError):
        http1.serialize_pieces([b"GET", None], [])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        head_bytes.serialize([b"GET", None], [], None)  # type: ignore[list-item]
