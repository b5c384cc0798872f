"""numba scanner of Coinbase Advanced Trade ``l2_data`` frames: the batch hot path of the adapter.

``scan_l2_frames`` reads many raw frames laid back to back in one byte buffer and writes,
per frame, one row of the shared scan table (``feeds.scan``): the product's key, snapshot
or update, the venue time (the frame's RFC 3339 ``timestamp``, in ns) and the byte ranges
of the bid and ask level arrays. Coinbase's levels are objects with a per-level side
(``{"side":"bid"|"offer","event_time":..,"price_level":"P","new_quantity":"Q"}``), so the
scanner *transcodes*: it writes ``[["P","Q"],..]`` per side, in wire order, into an output
buffer, byte for byte what the adapter's ``decode`` puts in ``RawBook.bids``/``asks``
(msgspec's encoding of the same strings), and the ranges point there.

The scanner vouches only for the common shape: one object ``{"channel":"l2_data",
"timestamp":..,"sequence_num":..,"events":[<one event>],..}`` whose one event has a
``type`` of ``snapshot`` or ``update``, a ``product_id`` and an ``updates`` array, every
string printable ASCII without escapes, keys in any order, each once, whitespace where
JSON allows it, and a timestamp exactly ``YYYY-MM-DDTHH:MM:SS[.digits]Z``. Anything else
(heartbeats, subscriptions, errors, several events in one frame, escapes, odd timestamps,
duplicate keys, malformed JSON) is handed to the adapter's ``decode``.

Speed: an update written Coinbase's usual way (``{"side":..,"event_time":..,"price_level":
..,"new_quantity":..}`` in that order, no spaces) is checked byte by byte against that
layout without the key loop (``_usual_update``); any other spelling of an update goes
through the key loop. The hot loops index the frames with unsigned ints, which spares a
negative-index wrap-around per byte and lets fixed-length checks compile to wide compares.

Order: the pipeline decodes a handed-over frame in its place between the scanned ones
(``BookPipeline.feed_prescanned``), which Coinbase books need: they have no sequence ids
to catch an update applied out of order.

The per-connection ``sequence_num`` check stays in the session layer (CoinbaseSequence).
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
    T_KIND,
    T_STATUS,
    T_SYMBOL_KEY,
    T_TS_NS,
    hash_string,
    is_space,
    key_is,
    literal_at,
    rfc3339_ns,
)

SIDE_BID = 0
SIDE_ASK = 1
# columns of the per-frame scratch table of levels: one row per update
L_SIDE = 0
L_PX = 1  # start of the price text (inside the quotes)
L_PX_END = 2
L_QTY = 3
L_QTY_END = 4
N_LEVEL = 5

MIN_UPDATE_BYTES = 40  # an update object is longer: levels per frame <= bytes // this + 1

_space = is_space


@njit(cache=True, inline="always")
def clean_string(buf: np.ndarray, i: int, end: int) -> int:
    """``i`` at an opening quote: index after the closing quote when every byte between is
    printable ASCII other than a backslash, else -1 (the text is then what msgspec reads
    and writes back unchanged)."""
    if i >= end or buf[i] != 34:
        return -1
    i += 1
    while i < end:
        c = buf[i]
        if c == 34:
            return i + 1
        if c < 32 or c > 126 or c == 92:
            return -1
        i += 1
    return -1


@njit(cache=True, inline="always")
def _ws(buf: np.ndarray, i: int, end: int) -> int:
    while i < end and _space(buf[i]):
        i += 1
    return i


@njit(cache=True, inline="always")
def _key(buf: np.ndarray, i: int, end: int) -> tuple[int, int, int]:
    """At an object's key (after '{' or ','): (key start, key length, index of its value)
    or (-1, 0, -1)."""
    i = _ws(buf, i, end)
    k0 = i + 1
    j = clean_string(buf, i, end)
    if j < 0:
        return -1, 0, -1
    klen = j - 1 - k0
    j = _ws(buf, j, end)
    if j >= end or buf[j] != 58:  # ':'
        return -1, 0, -1
    j = _ws(buf, j + 1, end)
    if j >= end:
        return -1, 0, -1
    return k0, klen, j


@njit(cache=True, inline="always")
def _next(buf: np.ndarray, i: int, end: int, close: int) -> tuple[int, bool]:
    """After a member or element: (index after ',', False), (index after ``close``, True),
    or (-1, True)."""
    i = _ws(buf, i, end)
    if i >= end:
        return -1, True
    if buf[i] == 44:
        return i + 1, False
    if buf[i] == close:
        return i + 1, True
    return -1, True


@njit(cache=True, inline="always")
def _is_word(buf: np.ndarray, i: int, j: int, word: bytes) -> bool:
    """The string ``buf[i:j]`` (quotes included) is ``word``."""
    return j - i == len(word) + 2 and key_is(buf, i + 1, len(word), word)


_LOW7 = np.uint64(0x7F7F7F7F7F7F7F7F)
_ONES = np.uint64(0x0101010101010101)
_HIGH = np.uint64(0x8080808080808080)
_QUOTES = np.uint64(0x2222222222222222)
_BACKSLASHES = np.uint64(0x5C5C5C5C5C5C5C5C)
_CONTROL = np.uint64(0xE0E0E0E0E0E0E0E0)  # a byte below 32 has none of these bits


@njit(cache=True, inline="always")
def _zero_bytes(x: np.uint64) -> np.uint64:
    """The high bit of every byte of ``x`` that is zero, exactly (no carry crosses a byte,
    nothing overflows: the same in plain Python)."""
    return ~(((x & _LOW7) + _LOW7) | x) & _HIGH


@njit(cache=True, inline="always")
def _text_end(buf: np.ndarray, i: int, end: int) -> int:
    """``i`` inside a string: the index of its closing quote when every byte before it is
    printable ASCII other than a backslash, else -1.

    A text whose closing quote falls in its first 8 bytes (prices and sizes) is read as one
    64-bit word, without a branch per byte: one flag per quote and per bad byte, the text
    is good when no bad flag sits below the first quote's. Anything else goes byte by byte,
    with unsigned indices (no negative-index wrap-around per byte)."""
    u = np.uint64(i)
    e = np.uint64(end)
    if u + np.uint64(8) <= np.uint64(buf.shape[0]):
        w = (  # little-endian: byte 0 is the lowest (the compiler makes it one load)
            np.uint64(buf[u])
            | (np.uint64(buf[u + np.uint64(1)]) << np.uint64(8))
            | (np.uint64(buf[u + np.uint64(2)]) << np.uint64(16))
            | (np.uint64(buf[u + np.uint64(3)]) << np.uint64(24))
            | (np.uint64(buf[u + np.uint64(4)]) << np.uint64(32))
            | (np.uint64(buf[u + np.uint64(5)]) << np.uint64(40))
            | (np.uint64(buf[u + np.uint64(6)]) << np.uint64(48))
            | (np.uint64(buf[u + np.uint64(7)]) << np.uint64(56))
        )
        q = _zero_bytes(w ^ _QUOTES)
        if q != np.uint64(0):
            lq = q & (~q + np.uint64(1))  # the first quote's flag (q > 0: no overflow)
            bad = (
                _zero_bytes(w ^ _BACKSLASHES)
                | _zero_bytes(w & _CONTROL)
                | ((((w & _LOW7) + _ONES) | w) & _HIGH)  # 127 and up (low bits 0x7F or high bit)
            )
            if bad & (lq - np.uint64(1)) == np.uint64(0):  # no bad byte before the quote
                # the quote's byte k: lq >> 7 is 256**k, less 1 it has k bytes 0xFF,
                # and their low bits summed (256 is 1 modulo 255) are k
                k = u + ((((lq >> np.uint64(7)) - np.uint64(1)) & _ONES) % np.uint64(255))
                if k < e:
                    return np.int64(k)  # type: ignore[return-value]
    while u < e:
        c = buf[u]
        if c == 34:
            return np.int64(u)  # type: ignore[return-value]
        if c < 32 or c > 126 or c == 92:
            return -1
        u += np.uint64(1)
    return -1


EVENT_TIME_BYTES = 30  # 2025-10-04T00:02:46.000000000Z, as Coinbase writes an update's time
# the bytes of a usual update after its side value, with empty price and size texts:
# ,"event_time":"<30 bytes>","price_level":"","new_quantity":""}
USUAL_TAIL_BYTES = 15 + EVENT_TIME_BYTES + 17 + 18 + 2


@njit(cache=True, inline="always")
def _usual_update(buf: np.ndarray, i: int, end: int, levels: np.ndarray, n: int) -> int:
    """The update object at ``i`` if it is written as Coinbase writes it,
    ``{"side":"bid"|"offer","event_time":"T","price_level":"P","new_quantity":"Q"}``
    without spaces, every string printable ASCII without escapes: its side and texts into
    row ``n`` of ``levels``, the index after it; else -1 (the caller reads it the general
    way). The event time is checked to be a plain string only (decode does not read it),
    without branches when it has the usual 30 bytes."""
    if i + 13 + USUAL_TAIL_BYTES > end or not literal_at(buf, i, b'{"side":"'):
        return -1
    if literal_at(buf, i + 9, b'bid"'):
        side = SIDE_BID
        k = i + 13
    elif literal_at(buf, i + 9, b'offer"'):
        side = SIDE_ASK
        k = i + 15
        if k + USUAL_TAIL_BYTES > end:
            return -1
    else:
        return -1  # "ask" and the rest: the general way
    if not literal_at(buf, k, b',"event_time":"'):
        return -1
    k += 15
    if buf[k + EVENT_TIME_BYTES] == 34:  # the usual length: checked without branches
        bad = False
        for m in range(np.uint64(k), np.uint64(k + EVENT_TIME_BYTES)):
            c = buf[m]
            bad |= (c < 32) | (c > 126) | (c == 34) | (c == 92)
        if bad:
            return -1
        k += EVENT_TIME_BYTES
    else:  # another length (snapshots carry 1970-01-01T00:00:00Z)
        k = _text_end(buf, k, end)
        if k < 0 or k + 37 > end:
            return -1
    if not literal_at(buf, k, b'","price_level":"'):
        return -1
    p0 = k + 17
    p1 = _text_end(buf, p0, end)
    if p1 < 0 or p1 + 20 > end or not literal_at(buf, p1, b'","new_quantity":"'):
        return -1
    q0 = p1 + 18
    q1 = _text_end(buf, q0, end)
    if q1 < 0 or q1 + 2 > end or buf[q1 + 1] != 125:
        return -1
    levels[n, L_SIDE] = side
    levels[n, L_PX] = p0
    levels[n, L_PX_END] = p1
    levels[n, L_QTY] = q0
    levels[n, L_QTY_END] = q1
    return q1 + 2


@njit(cache=True)
def _update(buf: np.ndarray, i: int, end: int, levels: np.ndarray, n: int) -> int:
    """The update object at ``i``, in any key order and spacing, into row ``n`` of
    ``levels`` (L_* columns): index after it, or -1."""
    if i >= end or buf[i] != 123:
        return -1
    i = _ws(buf, i + 1, end)
    if i < end and buf[i] == 125:
        return -1  # {}: the required fields are missing
    seen = 0
    while True:
        k0, klen, i = _key(buf, i, end)
        if i < 0:
            return -1
        j = clean_string(buf, i, end)  # every value of an update is a plain string
        if j < 0:
            return -1
        bit = 0
        if key_is(buf, k0, klen, b"side"):
            bit = 1
            if _is_word(buf, i, j, b"bid"):
                levels[n, L_SIDE] = SIDE_BID
            elif _is_word(buf, i, j, b"offer") or _is_word(buf, i, j, b"ask"):
                levels[n, L_SIDE] = SIDE_ASK
            else:
                return -1
        elif key_is(buf, k0, klen, b"price_level"):
            bit = 2
            levels[n, L_PX] = i + 1
            levels[n, L_PX_END] = j - 1
        elif key_is(buf, k0, klen, b"new_quantity"):
            bit = 4
            levels[n, L_QTY] = i + 1
            levels[n, L_QTY_END] = j - 1
        if seen & bit:
            return -1  # duplicate key
        seen |= bit
        i, last = _next(buf, j, end, 125)
        if i < 0:
            return -1
        if last:
            break
    return i if seen == 7 else -1


@njit(cache=True)
def _updates(buf: np.ndarray, i: int, end: int, levels: np.ndarray) -> tuple[int, int]:
    """The ``updates`` array at ``i`` into ``levels``: (index after it, levels) or (-1, 0)."""
    if i >= end or buf[i] != 91:
        return -1, 0
    i = _ws(buf, i + 1, end)
    if i < end and buf[i] == 93:
        return i + 1, 0
    n = 0
    rows = levels.shape[0]
    while True:
        if n >= rows:
            return -1, 0
        j = _usual_update(buf, i, end, levels, n)  # the common shape: no key loop
        if j < 0:
            j = _update(buf, _ws(buf, i, end), end, levels, n)
            if j < 0:
                return -1, 0
        n += 1
        if j + 1 < end and buf[j] == 44 and buf[j + 1] == 123:  # ',{': the next update
            i = j + 1
            continue
        i, last = _next(buf, j, end, 93)
        if i < 0:
            return -1, 0
        if last:
            return i, n


@njit(cache=True)
def _event(
    buf: np.ndarray, i: int, end: int, row: np.ndarray, levels: np.ndarray
) -> tuple[int, int]:
    """The one event object at ``i``: kind and product key into ``row``, levels into
    ``levels``; (index after it, levels) or (-1, 0)."""
    if i >= end or buf[i] != 123:
        return -1, 0
    i = _ws(buf, i + 1, end)
    if i < end and buf[i] == 125:
        return -1, 0
    seen = 0
    n = 0
    while True:
        k0, klen, i = _key(buf, i, end)
        if i < 0:
            return -1, 0
        bit = 0
        if key_is(buf, k0, klen, b"type"):
            bit = 1
            j = clean_string(buf, i, end)
            if j < 0:
                return -1, 0
            if _is_word(buf, i, j, b"update"):
                row[T_KIND] = KIND_DELTA
            elif _is_word(buf, i, j, b"snapshot"):
                row[T_KIND] = KIND_SNAPSHOT
            else:
                return -1, 0
        elif key_is(buf, k0, klen, b"product_id"):
            bit = 2
            j = clean_string(buf, i, end)
            if j < 0:
                return -1, 0
            h, j = hash_string(buf, i, end)  # not empty
            if j < 0:
                return -1, 0
            row[T_SYMBOL_KEY] = h
        elif key_is(buf, k0, klen, b"updates"):
            bit = 4
            j, n = _updates(buf, i, end, levels)
        else:
            j = clean_string(buf, i, end)  # other members: plain strings only
        if j < 0:
            return -1, 0
        if seen & bit:
            return -1, 0
        seen |= bit
        i, last = _next(buf, j, end, 125)
        if i < 0:
            return -1, 0
        if last:
            break
    if seen != 7:
        return -1, 0
    return i, n


@njit(cache=True)
def _events(
    buf: np.ndarray, i: int, end: int, row: np.ndarray, levels: np.ndarray
) -> tuple[int, int]:
    """The ``events`` array at ``i`` holding exactly one event: (index after it, levels)
    or (-1, 0)."""
    if i >= end or buf[i] != 91:
        return -1, 0
    i, n = _event(buf, _ws(buf, i + 1, end), end, row, levels)
    if i < 0:
        return -1, 0
    i = _ws(buf, i, end)
    if i >= end or buf[i] != 93:
        return -1, 0  # several events (decode gives a list), or malformed
    return i + 1, n


@njit(cache=True)
def _frame(buf: np.ndarray, i: int, end: int, row: np.ndarray, levels: np.ndarray) -> int:
    """Scan the frame ``buf[i:end]``: the number of levels of a book frame the scanner
    vouches for (kind, product key and time in ``row``, levels in ``levels``), else -1."""
    i = _ws(buf, i, end)
    if i >= end or buf[i] != 123:
        return -1
    seen = 0
    n = 0
    i += 1
    while True:
        k0, klen, i = _key(buf, i, end)
        if i < 0:
            return -1
        bit = 0
        j = -1
        if key_is(buf, k0, klen, b"channel"):
            bit = 1
            j = clean_string(buf, i, end)
            if j < 0 or not _is_word(buf, i, j, b"l2_data"):
                return -1
        elif key_is(buf, k0, klen, b"timestamp"):
            bit = 2
            j = clean_string(buf, i, end)
            if j < 0:
                return -1
            ts = rfc3339_ns(buf, i + 1, j - 1)
            if ts < 0:
                return -1  # odd (or empty: the time of receipt): decode
            row[T_TS_NS] = ts
        elif key_is(buf, k0, klen, b"sequence_num"):
            bit = 4
            # a JSON integer (msgspec's int): no sign, no leading zero, no fraction
            j = i
            while j < end and 48 <= buf[j] <= 57:
                j += 1
            if j == i or j - i > 18 or (buf[i] == 48 and j - i > 1):
                return -1
        elif key_is(buf, k0, klen, b"events"):
            bit = 8
            j, n = _events(buf, i, end, row, levels)
        else:
            j = clean_string(buf, i, end)  # client_id; other members: plain strings only
            # "type" and "message" are the error shape's: decode reads them as such
            if key_is(buf, k0, klen, b"type") or key_is(buf, k0, klen, b"message"):
                return -1
        if j < 0 or seen & bit:
            return -1  # not what a book frame holds, or a duplicate key
        seen |= bit
        i, last = _next(buf, j, end, 125)
        if i < 0:
            return -1
        if last:
            break
    # the channel, the timestamp and the events were read, nothing follows the object
    if (seen & 11) == 11 and _ws(buf, i, end) == end:
        return n
    return -1


@njit(cache=True)
def _side(out: np.ndarray, o: int, buf: np.ndarray, levels: np.ndarray, n: int, side: int) -> int:
    """Write the levels of ``side`` as ``[["P","Q"],..]`` at ``out[o]`` (the caller checked
    the room): the index after. Each level is written with its comma, the last comma is
    then overwritten by the ``]``; unsigned indices (no negative-index wrap-around)."""
    u = np.uint64(o)
    out[u] = 91
    u += np.uint64(1)
    for m in range(n):
        if levels[m, L_SIDE] != side:
            continue
        out[u] = 91
        out[u + np.uint64(1)] = 34
        u += np.uint64(2)
        a = np.uint64(levels[m, L_PX])
        for t in range(np.uint64(levels[m, L_PX_END]) - a):
            out[u + t] = buf[a + t]
        u += np.uint64(levels[m, L_PX_END]) - a
        out[u] = 34
        out[u + np.uint64(1)] = 44
        out[u + np.uint64(2)] = 34
        u += np.uint64(3)
        a = np.uint64(levels[m, L_QTY])
        for t in range(np.uint64(levels[m, L_QTY_END]) - a):
            out[u + t] = buf[a + t]
        u += np.uint64(levels[m, L_QTY_END]) - a
        out[u] = 34
        out[u + np.uint64(1)] = 93
        out[u + np.uint64(2)] = 44
        u += np.uint64(3)
    if u - np.uint64(o) > np.uint64(1):
        u -= np.uint64(1)  # the last level's comma
    out[u] = 93
    return np.int64(u) + 1  # type: ignore[return-value]


@njit(cache=True)
def scan_l2_frames(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    out: np.ndarray,
    levels: np.ndarray,
    table: np.ndarray,
) -> int:
    """Scan frame k in ``buf[starts[k]:ends[k]]`` into row k of the scan table ``table``
    (``feeds.scan.new_table``), its levels transcoded into ``out``; ``levels`` is scratch
    (N_LEVEL columns, rows for the largest frame's updates). Returns the bytes of ``out``
    written."""
    o = 0
    for k in range(starts.shape[0]):
        row = table[k]
        row[T_STATUS] = SCAN_OTHER
        n = _frame(buf, starts[k], ends[k], row, levels)
        if n < 0:
            continue
        need = 4
        for m in range(n):
            need += (
                8 + levels[m, L_PX_END] - levels[m, L_PX] + levels[m, L_QTY_END] - levels[m, L_QTY]
            )
        if o + need > out.shape[0]:
            return o  # no room (cannot happen: see scan_frames): the rest to decode
        bid_start = o
        ask_start = _side(out, o, buf, levels, n, SIDE_BID)
        o = _side(out, ask_start, buf, levels, n, SIDE_ASK)
        row[T_STATUS] = SCAN_BOOK
        row[T_BID_START] = bid_start
        row[T_BID_END] = ask_start
        row[T_ASK_START] = ask_start
        row[T_ASK_END] = o
    return o


def level_rows(largest_frame: int) -> int:
    """Rows of the levels scratch table for frames of up to ``largest_frame`` bytes."""
    return largest_frame // MIN_UPDATE_BYTES + 1


@njit(cache=True, nogil=True)
def scan_l2_frames_released(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    out: np.ndarray,
    levels: np.ndarray,
    table: np.ndarray,
) -> int:
    """``scan_l2_frames`` without holding the GIL (a replay's reader thread scans ahead of the
    replay); a separate entry, so that the live path's calls stay as they are."""
    return scan_l2_frames(buf, starts, ends, out, levels, table)
