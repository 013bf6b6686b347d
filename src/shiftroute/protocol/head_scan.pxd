# The compiled twin of head_scan.py: request_reader.pxd and backend_side.pxd cimport this module under the
# same name as their .py files import the Python one (the pattern of head_bytes.pxd). Compiled, a plain
# request head that arrives whole, and a plain response that arrives whole in one read, are read here in one
# pass over their bytes, instead of by llhttp through httptools' Python callbacks (one per header field,
# then a tuple, and for a request a version string formatted from two integers). As Python sources,
# `request` and `response` answer None and llhttp reads everything.
#
# Safety rests on one rule: this scanner accepts only a strict subset of what llhttp accepts, and produces
# for it exactly the method, target, version and fields llhttp would have (tests/unit/test_head_scan.py
# checks both against llhttp on generated and mutated heads). Everything else, including any head that is
# incomplete, malformed, large, or that changes how llhttp would read what follows, answers None and is
# parsed by llhttp as before, which then accepts or refuses it as always. So the scanner never refuses and
# never decides framing:
# - request line: a method from a short list of upper-case names, one space, an origin-form target of RFC
#   3986 path and query characters (no fragment, no percent-decoding), one space, exactly `HTTP/1.1`, CRLF;
# - fields: a token name (RFC 9110 §5.6.2), a colon, optional spaces or tabs, a non-empty value of visible
#   ASCII, spaces and tabs (kept as llhttp keeps them, trailing whitespace included: http1.trim removes it
#   later), CRLF; no obs-fold, no bare LF, no obs-text;
# - no Content-Length, Transfer-Encoding (the head then ends the request: RFC 9112 §6.3 rule 7), Upgrade,
#   Proxy-Connection or Connection other than `keep-alive` (llhttp's own keep-alive and upgrade states), at
#   most MAX_FIELDS fields, the whole head within the router's head limit.
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcmp


cdef inline bint _is_url_char(unsigned char c):
    # RFC 3986 pchar, "/" and "?": unreserved, sub-delims, ":", "@", "%" (checked as a character only).
    return (
        (c >= 97 and c <= 122)  # a-z
        or (c >= 65 and c <= 90)  # A-Z
        or (c >= 47 and c <= 59)  # / 0-9 : ;
        or c == 33 or c == 36 or c == 37 or c == 38 or c == 39 or c == 40 or c == 41  # ! $ % & ' ( )
        or c == 42 or c == 43 or c == 44 or c == 45 or c == 46  # * + , - .
        or c == 61 or c == 63 or c == 64 or c == 95 or c == 126  # = ? @ _ ~
    )


cdef inline bint _is_tchar(unsigned char c):
    # RFC 9110 §5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." / "^" / "_" /
    # "`" / "|" / "~" / DIGIT / ALPHA
    return (
        (c >= 97 and c <= 122)
        or (c >= 65 and c <= 90)
        or (c >= 48 and c <= 57)
        or c == 33 or c == 35 or c == 36 or c == 37 or c == 38 or c == 39 or c == 42 or c == 43
        or c == 45 or c == 46 or c == 94 or c == 95 or c == 96 or c == 124 or c == 126
    )


cdef inline bint _is_value_char(unsigned char c):
    return (c >= 32 and c <= 126) or c == 9  # visible ASCII, space, tab


cdef inline bint _lower_equals(const unsigned char* p, Py_ssize_t n, const char* lower, Py_ssize_t size):
    """Whether p[:n] spells `lower` (lowercase ASCII) in any case."""
    cdef Py_ssize_t k
    if n != size:
        return False
    for k in range(n):
        if (p[k] | 0x20) != <unsigned char>lower[k]:
            return False
    return True


cdef inline bint _changes_parsing(const unsigned char* name, Py_ssize_t n, const unsigned char* value,
                                  Py_ssize_t m):
    """A field that makes llhttp read the request differently: the scanner leaves such a head to llhttp."""
    if n < 7 or n > 17:  # the names below are 7 to 17 bytes long: most fields end here
        return False
    if _lower_equals(name, n, b"connection", 10):
        return not _lower_equals(value, m, b"keep-alive", 10)
    return (
        _lower_equals(name, n, b"content-length", 14)
        or _lower_equals(name, n, b"transfer-encoding", 17)
        or _lower_equals(name, n, b"upgrade", 7)
        or _lower_equals(name, n, b"proxy-connection", 16)
    )


cdef inline bytes _method(const unsigned char* p, Py_ssize_t n):
    # The methods llhttp knows that take no body unless framed (CONNECT and the rest stay with llhttp).
    if n == 3 and memcmp(p, b"GET", 3) == 0:
        return b"GET"
    if n == 4 and memcmp(p, b"HEAD", 4) == 0:
        return b"HEAD"
    if n == 4 and memcmp(p, b"POST", 4) == 0:
        return b"POST"
    if n == 3 and memcmp(p, b"PUT", 3) == 0:
        return b"PUT"
    if n == 6 and memcmp(p, b"DELETE", 6) == 0:
        return b"DELETE"
    if n == 7 and memcmp(p, b"OPTIONS", 7) == 0:
        return b"OPTIONS"
    if n == 5 and memcmp(p, b"PATCH", 5) == 0:
        return b"PATCH"
    return None


cdef inline Py_ssize_t _fields(const unsigned char* p, Py_ssize_t i, Py_ssize_t end, Py_ssize_t max_fields,
                               list fields, Py_ssize_t* content_length) except -2:
    """Field lines from p[i] through the empty line that ends the head, appended to `fields` as (name,
    value); the position after that empty line, or -1 to leave the head to llhttp. `content_length` is
    NULL for a request (a Content-Length leaves the head to llhttp), or where a response's one
    Content-Length is stored (-1 without one)."""
    cdef Py_ssize_t name_start, name_end, value_start, k, length
    while True:
        if end - i < 2:
            return -1  # incomplete (or over the limit): llhttp buffers or refuses it
        if p[i] == 13:
            return i + 2 if p[i + 1] == 10 else -1
        name_start = i
        while i < end and _is_tchar(p[i]):
            i += 1
        if i == name_start or i >= end or p[i] != 58:  # ":" right after the name
            return -1
        name_end = i
        i += 1
        while i < end and (p[i] == 32 or p[i] == 9):
            i += 1
        value_start = i
        while i < end and _is_value_char(p[i]):
            i += 1
        if i == value_start or end - i < 2 or p[i] != 13 or p[i + 1] != 10:
            return -1  # empty value, a character outside the set, a bare CR or LF, or incomplete
        if content_length != NULL and _lower_equals(p + name_start, name_end - name_start, b"content-length", 14):
            if content_length[0] >= 0 or i - value_start > 18:
                return -1  # a second one (llhttp refuses it), or too long for the router (it refuses it)
            length = 0
            for k in range(value_start, i):
                if p[k] < 48 or p[k] > 57:
                    return -1  # digits only: anything else is llhttp's (and the router's) to refuse
                length = length * 10 + (p[k] - 48)
            content_length[0] = length
        elif _changes_parsing(p + name_start, name_end - name_start, p + value_start, i - value_start):
            return -1
        if len(fields) >= max_fields:
            return -1
        fields.append(
            (
                PyBytes_FromStringAndSize(<const char*>p + name_start, name_end - name_start),
                PyBytes_FromStringAndSize(<const char*>p + value_start, i - value_start),
            )
        )
        i += 2


cdef inline tuple request(bytes data, Py_ssize_t start, Py_ssize_t limit, Py_ssize_t max_fields):
    """(end, method, target, fields) for a plain head that starts at data[start] and ends before data[end],
    read as llhttp reads it; None to leave the bytes to llhttp (see above)."""
    cdef const unsigned char* p
    cdef Py_ssize_t end, i = start, url_start, parsed
    cdef list fields = []
    cdef bytes method, name, value
    cdef tuple item
    if data is None:  # typed `bytes` lets None through: it has no buffer
        return None
    p = <const unsigned char*>PyBytes_AS_STRING(data)
    end = PyBytes_GET_SIZE(data)
    if start < 0 or start >= end:
        return None
    if end - start > limit:
        end = start + limit  # a head longer than the limit is llhttp's to refuse
    while i < end and p[i] >= 65 and p[i] <= 90:
        i += 1
    method = _method(p + start, i - start)
    if method is None or i >= end or p[i] != 32:
        return None
    i += 1
    url_start = i
    if i >= end or p[i] != 47:  # origin-form only: "/"
        return None
    while i < end and _is_url_char(p[i]):
        i += 1
    if i >= end or p[i] != 32:
        return None
    target = PyBytes_FromStringAndSize(<const char*>p + url_start, i - url_start)
    i += 1
    if end - i < 10 or memcmp(p + i, b"HTTP/1.1\r\n", 10) != 0:
        return None
    i = _fields(p, i + 10, end, max_fields, fields, NULL)
    if i < 0:
        return None
    # The reader's own measure of a head read by llhttp (hardening.md rule 14: the target and each field
    # as name + value + 4), which can exceed the bytes on the wire: over the limit, llhttp's path refuses.
    parsed = PyBytes_GET_SIZE(target)
    for item in fields:
        name = item[0]
        value = item[1]
        parsed += PyBytes_GET_SIZE(name) + PyBytes_GET_SIZE(value) + 4
    if parsed > limit:
        return None
    return (i, method, target, fields)


cdef inline tuple response(bytes data, Py_ssize_t limit, Py_ssize_t max_fields):
    """(status, reason, fields, body) when `data` is exactly one plain response: a head as llhttp reads it,
    with one Content-Length, then that many bytes and nothing after them; None to leave it to llhttp.

    Plain: `HTTP/1.1`, a status from 200 to 599 other than 204, 205 and 304 (1xx are interim or an upgrade,
    the others have no body whatever the head says), a non-empty reason of visible ASCII, spaces and tabs,
    and the fields of a request's scan (no Transfer-Encoding, Upgrade, Proxy-Connection, or Connection other
    than `keep-alive`). The caller also leaves to llhttp the answer to a HEAD request (no body, whatever the
    Content-Length), and bytes after the response (rule 12 decides what becomes of them)."""
    cdef const unsigned char* p
    cdef Py_ssize_t size, end, i, reason_start, content_length = -1
    cdef int status
    cdef list fields = []
    if data is None:
        return None
    p = <const unsigned char*>PyBytes_AS_STRING(data)
    size = PyBytes_GET_SIZE(data)
    end = size if size <= limit else limit
    if end < 17 or memcmp(p, b"HTTP/1.1 ", 9) != 0:
        return None
    if p[9] < 50 or p[9] > 53 or p[10] < 48 or p[10] > 57 or p[11] < 48 or p[11] > 57 or p[12] != 32:
        return None
    status = (p[9] - 48) * 100 + (p[10] - 48) * 10 + (p[11] - 48)
    if status == 204 or status == 205 or status == 304:
        return None
    i = 13
    reason_start = i
    while i < end and _is_value_char(p[i]):
        i += 1
    if i == reason_start or end - i < 2 or p[i] != 13 or p[i + 1] != 10:
        return None
    if p[reason_start] == 32 or p[reason_start] == 9 or p[i - 1] == 32 or p[i - 1] == 9:
        return None  # spaces around the reason: llhttp's
    reason = PyBytes_FromStringAndSize(<const char*>p + reason_start, i - reason_start)
    i = _fields(p, i + 2, end, max_fields, fields, &content_length)
    if i < 0 or content_length < 0 or size - i != content_length:
        return None
    return (status, reason, fields, PyBytes_FromStringAndSize(<const char*>p + i, content_length))
