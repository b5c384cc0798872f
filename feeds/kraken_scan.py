"""numba scanner of Kraken websocket v2 ``book`` frames: the batch hot path of the adapter.

``scan_book_frames`` reads many raw frames laid back to back in one byte buffer and writes,
per frame, one row of the shared scan table (``feeds.scan``): the symbol's key, the kind
(``snapshot`` or ``update``), the snapshot's limit (the subscribed depth), the CRC32
checksum, the venue time in ns, and the byte ranges of the bid and ask levels. Kraken
writes levels as objects (``{"price":45283.5,"qty":0.1}``); the scanner *transcodes* them
into level arrays (``[[45283.5,0.1],...]``) in an output buffer of its own, copying every
number's wire text byte for byte, exactly as ``KrakenAdapter.decode`` does (the checksum
needs every digit). The ranges point into that buffer.

Grammar vouched for (anything else goes to the adapter's msgspec ``decode``, which handles
or rejects it with a clear error; the scanner never guesses): one JSON object with exactly
the keys ``channel`` (``"book"``), ``type`` (``"snapshot"`` or ``"update"``) and ``data``
(an array of exactly one entry), in any order, whitespace where JSON allows it. The entry
holds ``symbol`` (a non-empty string of printable ASCII without escapes), ``timestamp``
(RFC 3339 ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z``, a valid date from 1970 to 2200, read by the
shared ``feeds.scan.rfc3339_ns``), and optionally ``bids``/``asks`` (arrays of objects
with exactly ``price`` and ``qty``, bare JSON numbers; both required in a snapshot) and
``checksum`` (a bare non-negative integer of at most 18 digits). A key seen twice, any
other key, an escape in a key, a null, a frame with several entries (several books) or
without a timestamp (decode uses the receive time) is handed over; so are heartbeats,
acks, status and error messages.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from feeds.scan import (
    KIND_DELTA,
    KIND_SNAPSHOT,
    SCAN_BOOK,
    SCAN_OTHER,
    T_ASK_END,
    T_ASK_START,
    T_BID_END,
    T_BID_START,
    T_CHECKSUM,
    T_HAS_CHECKSUM,
    T_KIND,
    T_LIMIT,
    T_STATUS,
    T_SYMBOL_KEY,
    T_TS_NS,
    after_level,
    after_member,
    hash_string,
    key_at,
    key_is,
    number_end,
    parse_int,
    rfc3339_ns,
    skip_space,
    write_level,
)

MAX_YEAR = 2200  # ns since the epoch stay well inside int64
MAX_TIMESTAMP_LEN = len("2023-10-06T17:35:55.440160Z")  # microseconds at most

# what the entry and frame objects held: bits of ``seen``
_CHANNEL, _TYPE, _DATA = 1, 2, 4
_SYMBOL, _BIDS, _ASKS, _CHECKSUM, _TIMESTAMP = 1, 2, 4, 8, 16
_PRICE, _QTY = 1, 2


@njit(cache=True)
def parse_timestamp(buf: np.ndarray, i: int, end: int) -> tuple[int, int]:
    """The JSON string at ``i`` as an RFC 3339 time ``YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z``
    (``feeds.scan.rfc3339_ns``) from 1970 to 2200: (ns since the epoch, at whole
    microseconds as msgspec decodes it; index after the closing quote) or (0, -1) for
    anything else (msgspec rounds a 7th digit; other forms go to decode)."""
    if i >= end or buf[i] != 34:
        return 0, -1
    j = i + 1
    while j < end and buf[j] != 34:
        j += 1
    if j >= end or j - (i + 1) > MAX_TIMESTAMP_LEN:
        return 0, -1
    ns = rfc3339_ns(buf, i + 1, j)
    if ns < 0:
        return 0, -1
    year = 0
    for m in range(i + 1, i + 5):  # four digits: rfc3339_ns checked them
        year = year * 10 + (int(buf[m]) - 48)
    if year > MAX_YEAR:
        return 0, -1
    return ns, j + 1


@njit(cache=True)
def _compact_level(buf: np.ndarray, i: int, end: int) -> tuple[int, int, int, int, int]:
    """The level object at ``i`` if it is written ``{"price":P,"qty":Q}`` without spaces
    (as Kraken writes it): (price start, price end, size start, size end, index after the
    object), else an index of -1."""
    j = i + 9
    if (
        j >= end
        or buf[i + 1] != 34
        or buf[i + 2] != 112  # p
        or buf[i + 3] != 114  # r
        or buf[i + 4] != 105  # i
        or buf[i + 5] != 99  # c
        or buf[i + 6] != 101  # e
        or buf[i + 7] != 34
        or buf[i + 8] != 58
    ):
        return 0, 0, 0, 0, -1
    p1 = number_end(buf, j, end)
    if p1 < 0 or p1 + 7 >= end:
        return 0, 0, 0, 0, -1
    if (
        buf[p1] != 44
        or buf[p1 + 1] != 34
        or buf[p1 + 2] != 113  # q
        or buf[p1 + 3] != 116  # t
        or buf[p1 + 4] != 121  # y
        or buf[p1 + 5] != 34
        or buf[p1 + 6] != 58
    ):
        return 0, 0, 0, 0, -1
    q1 = number_end(buf, p1 + 7, end)
    if q1 < 0 or q1 >= end or buf[q1] != 125:  # '}'
        return 0, 0, 0, 0, -1
    return j, p1, p1 + 7, q1, q1 + 1


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
        j = number_end(buf, v, end)
        if j < 0:
            return 0, 0, 0, 0, -1
        if key_is(buf, k0, klen, b"price"):
            bit = _PRICE
            p0, p1 = v, j
        elif key_is(buf, k0, klen, b"qty"):
            bit = _QTY
            q0, q1 = v, j
        else:
            return 0, 0, 0, 0, -1
        if seen & bit:
            return 0, 0, 0, 0, -1
        seen |= bit
        i, done = after_member(buf, j, end)
        if i < 0:
            return 0, 0, 0, 0, -1
    if seen != _PRICE | _QTY:
        return 0, 0, 0, 0, -1
    return p0, p1, q0, q1, i


@njit(cache=True)
def _transcode_levels(
    buf: np.ndarray, i: int, end: int, out: np.ndarray, o: int
) -> tuple[int, int]:
    """The array of level objects at ``i`` written as level arrays at ``out[o:]``:
    (index after the array, index after the written text) or (-1, o)."""
    o0 = o
    if buf[i] != 91:  # '['
        return -1, o0
    out[o] = 91
    o += 1
    i = skip_space(buf, i + 1, end)
    if i < end and buf[i] == 93:  # ']'
        out[o] = 93
        return i + 1, o + 1
    while True:
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
def _scan_entry(
    buf: np.ndarray, i: int, end: int, row: np.ndarray, out: np.ndarray, o: int
) -> tuple[int, int, int]:
    """The one entry of ``data`` at ``i`` into ``row``, its levels written at ``out[o:]``:
    (index after the entry, index after the written levels, fields seen) or (-1, o, 0)."""
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
        if key_is(buf, k0, klen, b"symbol"):
            bit = _SYMBOL
            h, j = hash_string(buf, v, end)
            if j < 0:
                return -1, o0, 0
            for m in range(v + 1, j - 1):
                if buf[m] < 32 or buf[m] > 126:  # control bytes, non-ASCII: decode
                    return -1, o0, 0
            row[T_SYMBOL_KEY] = h
        elif key_is(buf, k0, klen, b"bids") or key_is(buf, k0, klen, b"asks"):
            bit = _BIDS if buf[k0] == 98 else _ASKS
            if seen & bit:
                return -1, o0, 0
            if c != 91:
                return -1, o0, 0
            start = o
            j, o = _transcode_levels(buf, v, end, out, o)
            if j < 0:
                return -1, o0, 0
            if bit == _BIDS:
                row[T_BID_START] = start
                row[T_BID_END] = o
            else:
                row[T_ASK_START] = start
                row[T_ASK_END] = o
        elif key_is(buf, k0, klen, b"checksum"):
            bit = _CHECKSUM
            if c == 34 or c == 45 or (c == 48 and v + 1 < end and 48 <= buf[v + 1] <= 57):
                return -1, o0, 0  # quoted, negative or a leading zero: decode judges
            value, j = parse_int(buf, v, end)
            if value < 0:
                return -1, o0, 0
            row[T_CHECKSUM] = value
            row[T_HAS_CHECKSUM] = 1
        elif key_is(buf, k0, klen, b"timestamp"):
            bit = _TIMESTAMP
            ts, j = parse_timestamp(buf, v, end)
            if j < 0:
                return -1, o0, 0
            row[T_TS_NS] = ts
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
def _scan_frame(
    buf: np.ndarray, i: int, end: int, row: np.ndarray, out: np.ndarray, o: int, depth: int
) -> int:
    """The frame at ``i`` (its first non-space byte) into ``row``: the index after the
    levels written at ``out[o:]`` for a book frame, or -1 (row left for decode)."""
    if buf[i] != 123:
        return -1
    i = skip_space(buf, i + 1, end)
    seen = 0
    entry = 0
    kind = KIND_DELTA
    done = False
    while not done:
        k0, klen, v = key_at(buf, i, end)
        if v < 0:
            return -1
        if key_is(buf, k0, klen, b"channel"):
            bit = _CHANNEL
            if v + 6 > end or not key_is(buf, v, 6, b'"book"'):
                return -1
            j = v + 6
        elif key_is(buf, k0, klen, b"type"):
            bit = _TYPE
            if v + 10 <= end and key_is(buf, v, 10, b'"snapshot"'):
                kind = KIND_SNAPSHOT
                j = v + 10
            elif v + 8 <= end and key_is(buf, v, 8, b'"update"'):
                kind = KIND_DELTA
                j = v + 8
            else:
                return -1
        elif key_is(buf, k0, klen, b"data"):
            bit = _DATA
            if buf[v] != 91 or seen & _DATA:
                return -1
            j = skip_space(buf, v + 1, end)
            if j >= end:
                return -1
            j, o, entry = _scan_entry(buf, j, end, row, out, o)
            if j < 0:
                return -1
            j = skip_space(buf, j, end)
            if j >= end or buf[j] != 93:  # several entries (or none): decode
                return -1
            j += 1
        else:
            return -1
        if seen & bit:
            return -1
        seen |= bit
        i, done = after_member(buf, j, end)
        if i < 0:
            return -1
    if seen != _CHANNEL | _TYPE | _DATA:
        return -1
    if entry & _SYMBOL == 0 or entry & _TIMESTAMP == 0:
        return -1
    if kind == KIND_SNAPSHOT:
        if entry & _BIDS == 0 or entry & _ASKS == 0:
            return -1
        row[T_LIMIT] = depth
    else:
        row[T_LIMIT] = 0
    row[T_KIND] = kind
    if entry & _BIDS == 0:  # an update without a side: an empty array, as decode writes
        row[T_BID_START] = o
        out[o] = 91
        out[o + 1] = 93
        o += 2
        row[T_BID_END] = o
    if entry & _ASKS == 0:
        row[T_ASK_START] = o
        out[o] = 91
        out[o + 1] = 93
        o += 2
        row[T_ASK_END] = o
    i = skip_space(buf, i, end)
    if i != end:  # bytes after the object: not a frame we vouch for
        return -1
    return o


@njit(cache=True)
def scan_book_frames(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    table: np.ndarray,
    out: np.ndarray,
    depth: int,
) -> int:
    """Scan frame k in ``buf[starts[k]:ends[k]]`` into row k of the scan table ``table``
    (``feeds.scan.new_table``), the levels of book frames transcoded into ``out`` (at
    least ``len(buf) + 4 * len(starts)`` bytes); ``depth`` is a snapshot's limit. Returns
    the bytes of ``out`` used."""
    o = 0
    for k in range(starts.shape[0]):
        row = table[k]
        end = ends[k]
        i = skip_space(buf, starts[k], end)
        status = SCAN_OTHER
        if i < end:
            o_next = _scan_frame(buf, i, end, row, out, o, depth)
            if o_next >= 0:
                status = SCAN_BOOK
                o = o_next
        if status != SCAN_BOOK:  # a row for decode keeps the table's defaults
            row[T_KIND] = KIND_DELTA
            row[T_HAS_CHECKSUM] = 0
            row[T_CHECKSUM] = 0
        row[T_STATUS] = status
    return o


@njit(cache=True, nogil=True)
def scan_book_frames_released(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    table: np.ndarray,
    out: np.ndarray,
    depth: int,
) -> int:
    """``scan_book_frames`` without holding the GIL (a replay's reader thread scans ahead of the
    replay); a separate entry, so that the live path's calls stay as they are."""
    return scan_book_frames(buf, starts, ends, table, out, depth)
