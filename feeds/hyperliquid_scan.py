"""numba scanner of Hyperliquid ``l2Book`` frames: the batch hot path of the adapter.

``scan_book_frames`` reads many raw frames laid back to back in one byte buffer and writes,
per frame, one row of the shared scan table (``feeds.scan``). Every ``l2Book`` message is a
whole book, so a row is an in-band snapshot (limit 20) whose last id is the block time in
ms, with that time in ns as the venue time, exactly as ``HyperliquidAdapter.decode`` gives
it. Hyperliquid writes levels as objects (``{"px":"113377.0","sz":"7.6699","n":17}``); the
scanner *transcodes* them into level arrays (``[["113377.0","7.6699"],...]``) in an output
buffer of its own, copying each price and size as written (quotes included), as decode
does. The ranges point into that buffer.

Grammar vouched for (anything else goes to the adapter's msgspec ``decode``, which handles
or rejects it with a clear error; the scanner never guesses): one JSON object with exactly
the keys ``channel`` (``"l2Book"``) and ``data``, in any order, whitespace where JSON
allows it. ``data`` holds exactly ``coin`` (a non-empty string of printable ASCII without
escapes), ``time`` (a bare non-negative integer below 9e12) and ``levels`` (an array of
exactly two arrays of level objects). A level object holds ``px`` and ``sz`` (decimal
strings, or bare JSON numbers) and optionally ``n`` (a bare JSON number), nothing else.
A key seen twice, any other key, an escape in a key or a null is handed over; so are
pongs, subscription answers and errors. A frame of exactly ``channel``
(``"activeAssetCtx"``) and ``data`` is marked ``SCAN_SIDE``: decode reads it (a mark
price, never a book event), wherever it falls among the book events.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from feeds.scan import (
    KIND_SNAPSHOT,
    SCAN_BOOK,
    SCAN_OTHER,
    SCAN_SIDE,
    T_ASK_END,
    T_ASK_START,
    T_BID_END,
    T_BID_START,
    T_KIND,
    T_LAST,
    T_LIMIT,
    T_STATUS,
    T_SYMBOL_KEY,
    T_TS_NS,
    after_level,
    after_member,
    hash_string,
    key_at,
    key_is,
    literal_at,
    njit_without_nrt,
    njit_without_nrt_released,
    number_end,
    parse_int,
    skip_space,
    skip_value,
    write_level,
)

MS = 1_000_000  # ns per ms
BOOK_LEVELS = 20  # a snapshot's limit: l2Book carries at most 20 levels a side
MAX_TIME_MS = 9_000_000_000_000  # ns since the epoch stay inside int64

_CHANNEL, _DATA = 1, 2
_L2BOOK, _ASSET_CTX = 1, 2  # the channels read
SIDE = -2  # _scan_frame: a mark price frame (SCAN_SIDE)
_COIN, _TIME, _LEVELS = 1, 2, 4
_PX, _SZ, _N = 1, 2, 4


@njit(cache=True)
def _decimal_end(buf: np.ndarray, i: int, end: int) -> int:
    """A price or size at ``i``: a string of digits, ``.``, ``-``, ``+``, ``e``/``E`` (at
    least one), or a bare JSON number. The index after it, or -1."""
    if i >= end:
        return -1
    if buf[i] != 34:
        return number_end(buf, i, end)
    j = i + 1
    while j < end:
        c = buf[j]
        if c == 34:
            return j + 1 if j > i + 1 else -1
        if not (48 <= c <= 57 or c == 46 or c == 45 or c == 43 or c == 101 or c == 69):
            return -1
        j += 1
    return -1


@njit(cache=True)
def _compact_level(buf: np.ndarray, i: int, end: int) -> tuple[int, int, int, int, int]:
    """The level object at ``i`` if it is written ``{"px":P,"sz":S}`` or
    ``{"px":P,"sz":S,"n":N}`` without spaces (as Hyperliquid writes it): (price start,
    price end, size start, size end, index after the object), else an index of -1."""
    j = i + 6
    if (
        j >= end
        or buf[i + 1] != 34
        or buf[i + 2] != 112  # p
        or buf[i + 3] != 120  # x
        or buf[i + 4] != 34
        or buf[i + 5] != 58
    ):
        return 0, 0, 0, 0, -1
    p1 = _decimal_end(buf, j, end)
    if p1 < 0 or p1 + 6 >= end:
        return 0, 0, 0, 0, -1
    if (
        buf[p1] != 44
        or buf[p1 + 1] != 34
        or buf[p1 + 2] != 115  # s
        or buf[p1 + 3] != 122  # z
        or buf[p1 + 4] != 34
        or buf[p1 + 5] != 58
    ):
        return 0, 0, 0, 0, -1
    q1 = _decimal_end(buf, p1 + 6, end)
    if q1 < 0 or q1 >= end:
        return 0, 0, 0, 0, -1
    if buf[q1] == 125:  # '}'
        return j, p1, p1 + 6, q1, q1 + 1
    if (
        q1 + 5 >= end
        or buf[q1] != 44
        or buf[q1 + 1] != 34
        or buf[q1 + 2] != 110  # n
        or buf[q1 + 3] != 34
        or buf[q1 + 4] != 58
    ):
        return 0, 0, 0, 0, -1
    k = number_end(buf, q1 + 5, end)
    if k < 0 or k >= end or buf[k] != 125:
        return 0, 0, 0, 0, -1
    return j, p1, p1 + 6, q1, k + 1


U1 = np.uint64(1)


@njit(cache=True, inline="always")
def _copy_digits(
    buf: np.ndarray, j: np.uint64, end: np.uint64, out: np.ndarray, w: np.uint64
) -> tuple[np.uint64, np.uint64]:
    """Copy the digits and dots at ``buf[j:]`` to ``out[w:]``: (index after them in
    ``buf``, in ``out``)."""
    while j < end:
        c = buf[j]
        if not (48 <= c <= 57 or c == 46):
            break
        out[w] = c
        w += U1
        j += U1
    return j, w


@njit(cache=True, inline="always")
def _usual_level(buf: np.ndarray, i: int, end: int, out: np.ndarray, o: int) -> tuple[int, int]:
    """The level object at ``i`` if it is written as Hyperliquid writes it,
    ``{"px":"P","sz":"S","n":N}`` without spaces, P and S digits and dots, N a JSON
    integer: written as ``["P","S"]`` at ``out[o:]`` while it is read, (index after the
    object, index after the written level); else (-1, o) and the caller reads it the
    general way. Inlined, unsigned indices: no call and no negative-index wrap-around per
    level, one pass that checks and copies (the general way: ~6 calls a level, and the
    copy after the check; the kernel 2.0 -> 1.0 us per 1.5 kB frame). The text written
    never runs ahead of the text read (``out`` as long as ``buf`` will do)."""
    u = np.uint64(i)
    e = np.uint64(end)
    if u + np.uint64(7) > e or not literal_at(buf, u, b'{"px":"'):
        return -1, o
    w = np.uint64(o)
    out[w] = 91  # '['
    out[w + U1] = 34
    j0 = u + np.uint64(7)
    j, w = _copy_digits(buf, j0, e, out, w + np.uint64(2))
    if j == j0 or j + np.uint64(8) > e or not literal_at(buf, j, b'","sz":"'):
        return -1, o
    out[w] = 34
    out[w + U1] = 44  # ','
    out[w + np.uint64(2)] = 34
    j0 = j + np.uint64(8)
    j, w = _copy_digits(buf, j0, e, out, w + np.uint64(3))
    if j == j0 or j + U1 >= e or buf[j] != 34:
        return -1, o
    out[w] = 34
    out[w + U1] = 93  # ']'
    w += np.uint64(2)
    j += U1
    if buf[j] == 125:  # '}': no order count
        return np.int64(j + U1), np.int64(w)  # type: ignore[return-value]
    if j + np.uint64(6) > e or not literal_at(buf, j, b',"n":'):
        return -1, o
    j += np.uint64(5)
    j0 = j
    if buf[j] == 48:  # a lone 0 (JSON writes no leading zero)
        j += U1
    else:
        while j < e and 48 <= buf[j] <= 57:
            j += U1
    if j == j0 or j >= e or buf[j] != 125:  # fractions, exponents, signs: the general way
        return -1, o
    return np.int64(j + U1), np.int64(w)  # type: ignore[return-value]


@njit(cache=True)
def _level(buf: np.ndarray, i: int, end: int) -> tuple[int, int, int, int, int]:
    """The level object at ``i`` in any key order and spacing: (price start, price end,
    size start, size end, index after the object), or an index of -1."""
    i = skip_space(buf, i + 1, end)
    seen = 0
    p0 = p1 = q0 = q1 = 0
    done = False
    while not done:
        k0, klen, v = key_at(buf, i, end)
        if v < 0:
            return 0, 0, 0, 0, -1
        if key_is(buf, k0, klen, b"px"):
            bit = _PX
            j = _decimal_end(buf, v, end)
            p0, p1 = v, j
        elif key_is(buf, k0, klen, b"sz"):
            bit = _SZ
            j = _decimal_end(buf, v, end)
            q0, q1 = v, j
        elif key_is(buf, k0, klen, b"n"):
            bit = _N
            j = number_end(buf, v, end)
        else:
            return 0, 0, 0, 0, -1
        if j < 0 or seen & bit:
            return 0, 0, 0, 0, -1
        seen |= bit
        i, done = after_member(buf, j, end)
        if i < 0:
            return 0, 0, 0, 0, -1
    if seen & (_PX | _SZ) != _PX | _SZ:
        return 0, 0, 0, 0, -1
    return p0, p1, q0, q1, i


@njit(cache=True)
def _transcode_levels(
    buf: np.ndarray, i: int, end: int, out: np.ndarray, o: int
) -> tuple[int, int]:
    """The array of level objects at ``i`` written as level arrays at ``out[o:]``:
    (index after the array, index after the written text) or (-1, o)."""
    o0 = o
    if i >= end or buf[i] != 91:  # '['
        return -1, o0
    out[o] = 91
    o += 1
    i = skip_space(buf, i + 1, end)
    if i < end and buf[i] == 93:  # ']'
        out[o] = 93
        return i + 1, o + 1
    while True:
        j, w = _usual_level(buf, i, end, out, o)
        if j > 0:  # the usual shape, and the usual separator: no call
            o = w
            if j < end and buf[j] == 44 and j + 1 < end and buf[j + 1] == 123:  # ',{'
                out[o] = 44
                o += 1
                i = j + 1
                continue
            if j < end and buf[j] == 93:  # ']'
                out[o] = 93
                return j + 1, o + 1
            i, o, closed = after_level(buf, j, end, out, o)
            if i < 0:
                return -1, o0
            if closed:
                return i, o
            continue
        if i >= end or buf[i] != 123:  # '{'
            return -1, o0
        p0, p1, q0, q1, j = _compact_level(buf, i, end)
        if j > 0:  # the common shape, checked byte by byte: no key loop
            i = j
        else:
            p0, p1, q0, q1, i = _level(buf, i, end)
            if i < 0:
                return -1, o0
        o = write_level(out, o, buf, p0, p1, q0, q1)
        i, o, closed = after_level(buf, i, end, out, o)
        if i < 0:
            return -1, o0
        if closed:
            return i, o


@njit(cache=True)
def _scan_data(
    buf: np.ndarray, i: int, end: int, row: np.ndarray, out: np.ndarray, o: int
) -> tuple[int, int, int]:
    """The ``data`` object at ``i`` into ``row``, its levels written at ``out[o:]``:
    (index after the object, index after the written levels, fields seen) or (-1, o, 0)."""
    o0 = o
    if buf[i] != 123:
        return -1, o0, 0
    i = skip_space(buf, i + 1, end)
    seen = 0
    done = False
    while not done:
        k0, klen, v = key_at(buf, i, end)
        if v < 0:
            return -1, o0, 0
        c = buf[v]
        if key_is(buf, k0, klen, b"coin"):
            bit = _COIN
            h, j = hash_string(buf, v, end)
            if j < 0:
                return -1, o0, 0
            for m in range(v + 1, j - 1):
                if buf[m] < 32 or buf[m] > 126:  # control bytes, non-ASCII: decode
                    return -1, o0, 0
            row[T_SYMBOL_KEY] = h
        elif key_is(buf, k0, klen, b"time"):
            bit = _TIME
            if c == 34 or c == 45 or (c == 48 and v + 1 < end and 48 <= buf[v + 1] <= 57):
                return -1, o0, 0  # quoted, negative or a leading zero: decode judges
            t, j = parse_int(buf, v, end)
            if t < 0 or t >= MAX_TIME_MS:
                return -1, o0, 0
            row[T_LAST] = t
            row[T_TS_NS] = t * MS
        elif key_is(buf, k0, klen, b"levels"):
            bit = _LEVELS
            if c != 91 or seen & _LEVELS:
                return -1, o0, 0
            j = skip_space(buf, v + 1, end)
            row[T_BID_START] = o
            j, o = _transcode_levels(buf, j, end, out, o)
            if j < 0:
                return -1, o0, 0
            row[T_BID_END] = o
            j = skip_space(buf, j, end)
            if j >= end or buf[j] != 44:  # exactly two sides
                return -1, o0, 0
            j = skip_space(buf, j + 1, end)
            row[T_ASK_START] = o
            j, o = _transcode_levels(buf, j, end, out, o)
            if j < 0:
                return -1, o0, 0
            row[T_ASK_END] = o
            j = skip_space(buf, j, end)
            if j >= end or buf[j] != 93:
                return -1, o0, 0
            j += 1
        else:
            return -1, o0, 0
        if seen & bit:
            return -1, o0, 0
        seen |= bit
        i, done = after_member(buf, j, end)
        if i < 0:
            return -1, o0, 0
    return i, o, seen


@njit(cache=True)
def _scan_frame(buf: np.ndarray, i: int, end: int, row: np.ndarray, out: np.ndarray, o: int) -> int:
    """The frame at ``i`` (its first non-space byte) into ``row``: the index after the
    levels written at ``out[o:]`` for a book frame, ``SIDE`` for an ``activeAssetCtx``
    frame, or -1 (row left for decode)."""
    if buf[i] != 123:
        return -1
    i = skip_space(buf, i + 1, end)
    seen = 0
    channel = 0
    data = 0
    done = False
    while not done:
        k0, klen, v = key_at(buf, i, end)
        if v < 0:
            return -1
        if key_is(buf, k0, klen, b"channel"):
            bit = _CHANNEL
            if v + 8 <= end and key_is(buf, v, 8, b'"l2Book"'):
                channel = _L2BOOK
                j = v + 8
            elif v + 16 <= end and key_is(buf, v, 16, b'"activeAssetCtx"'):
                channel = _ASSET_CTX
                j = v + 16
            else:
                return -1
        elif key_is(buf, k0, klen, b"data"):
            bit = _DATA
            if seen & _DATA:
                return -1
            j = -1
            if channel != _ASSET_CTX:
                j, o, data = _scan_data(buf, v, end, row, out, o)
            if j < 0:  # not a book's data: only a mark price's may follow
                if channel == _L2BOOK:
                    return -1
                data = 0
                j = skip_value(buf, v, end)
                if j < 0:
                    return -1
        else:
            return -1
        if seen & bit:
            return -1
        seen |= bit
        i, done = after_member(buf, j, end)
        if i < 0:
            return -1
    if seen != _CHANNEL | _DATA or skip_space(buf, i, end) != end:
        return -1  # bytes after the object: not a frame we vouch for
    if channel == _ASSET_CTX:
        return SIDE
    if data != _COIN | _TIME | _LEVELS:
        return -1
    return o


# without NRT (feeds.scan.njit_without_nrt): the ~10 helper calls per level, each given
# ``buf`` and ``out``, no longer pay two atomic increments and decrements each: the kernel
# 4.4 -> 2.0 us per 1.5 kB frame.
@njit_without_nrt
def scan_book_frames(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, table: np.ndarray, out: np.ndarray
) -> int:
    """Scan frame k in ``buf[starts[k]:ends[k]]`` into row k of the scan table ``table``
    (``feeds.scan.new_table``), the levels of book frames transcoded into ``out`` (at
    least ``len(buf)`` bytes). Returns the bytes of ``out`` used."""
    o = 0
    for k in range(starts.shape[0]):
        row = table[k]
        end = ends[k]
        i = skip_space(buf, starts[k], end)
        status = SCAN_OTHER
        if i < end:
            o_next = _scan_frame(buf, i, end, row, out, o)
            if o_next >= 0:
                status = SCAN_BOOK
                o = o_next
            elif o_next == SIDE:
                status = SCAN_SIDE
        if status == SCAN_BOOK:
            row[T_KIND] = KIND_SNAPSHOT
            row[T_LIMIT] = BOOK_LEVELS
        else:  # a row for decode keeps the table's defaults
            row[T_LAST] = -1
        row[T_STATUS] = status
    return o


@njit_without_nrt_released
def scan_book_frames_released(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    table: np.ndarray,
    out: np.ndarray,
) -> int:
    """``scan_book_frames`` without holding the GIL (a replay's reader thread scans ahead of the
    replay); a separate entry, so that the live path's calls stay as they are."""
    return scan_book_frames(buf, starts, ends, table, out)
