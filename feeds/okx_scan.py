"""numba scanner of OKX book frames (channel ``books``): the batch hot path of the adapter.

``scan_book_frames`` reads many raw frames laid back to back in one byte buffer and writes
one row of the shared scan table (``feeds.scan``) per frame. A row is a book event only
when the frame is exactly what ``OkxAdapter.decode`` turns into one book message::

    {"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot"|"update",
     "data":[{"asks":[[px,sz,"0",n],..],"bids":[..],"ts":"ms","checksum":int,
              "prevSeqId":int,"seqId":int}]}

and then the row holds what decode puts in the message: the kind (``snapshot``: an in-band
snapshot of ``limit`` levels, prev -1; ``update``: a delta, prev ``prevSeqId``), ``seqId``
as first and last id (-1 when absent), ``ts`` in ns, the checksum (0 or absent: none) and
the byte ranges of the two level arrays in the joined frames (OKX levels are already
arrays, so nothing is copied). Channels ``books-l2-tbt`` and ``books50-l2-tbt`` have the
same shape and scan alike.

The pushes of the mark channels (``mark-price``, ``funding-rate``, ``index-tickers``:
exactly ``arg`` and ``data``, a list of objects of plain scalars) and ``pong`` are
``SCAN_SIDE``: no book's events, decoded wherever, so they do not split a run of scanned
book frames. Everything else is ``SCAN_OTHER`` and goes through decode, in its place,
which handles or rejects it: events (subscribe, error, notice), other channels
(``books5``, ``bbo-tbt``, trades), ``data`` with several entries, duplicate keys, keys or
strings with escapes or bytes outside printable ASCII, numbers of other shapes than plain
integers (or integers in quotes), a field decode reads with another type, a value of an
unknown field that is not a plain scalar, malformed JSON anywhere, bytes after the
object. The scanner checks the JSON grammar of every byte it vouches for (level arrays
included), so that a frame decode would reject is never a book row.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from feeds.scan import (
    KIND_DELTA,
    KIND_SNAPSHOT,
    SCAN_BOOK,
    SCAN_OTHER,
    SCAN_SIDE,
    T_ASK_END,
    T_ASK_START,
    T_BID_END,
    T_BID_START,
    T_CHECKSUM,
    T_FIRST,
    T_HAS_CHECKSUM,
    T_KIND,
    T_LAST,
    T_LIMIT,
    T_PREV,
    T_SCRATCH,
    T_SCRATCH2,
    T_STATUS,
    T_SYMBOL_KEY,
    T_TS_NS,
    after_member,
    hash_string,
    key_is,
    number_end,
    skip_space,
)

MS = 1_000_000  # ns per ms
TS_DIGITS = 15  # ms since the epoch: 15 digits reach year 33658 and stay inside int64 as ns
INT_DIGITS = 18  # sequence ids and checksums: any 18-digit integer fits an int64

# snapshot depth (levels per side) of the book channels scanned here, as
# feeds.okx.BOOK_CHANNELS says (a test holds the two equal)
DEPTH_BOOKS = 400  # "books"
DEPTH_L2_TBT = 400  # "books-l2-tbt"
DEPTH_50_L2_TBT = 50  # "books50-l2-tbt"
SCANNED_CHANNELS = {"books": DEPTH_BOOKS, "books-l2-tbt": DEPTH_L2_TBT}
SCANNED_CHANNELS["books50-l2-tbt"] = DEPTH_50_L2_TBT

ACTION_SNAPSHOT = 1
ACTION_UPDATE = 2

# top-level fields (bits of "seen")
_ARG = 1
_ACTION = 2
_DATA = 4
# fields of the one data entry
_ASKS = 1
_BIDS = 2
_TS = 4
_CHECKSUM = 8
_SEQ = 16
_PREV_SEQ = 32


@njit(cache=True)
def _plain_string_end(buf: np.ndarray, i: int, end: int) -> int:
    """``i`` at an opening quote: the index after the closing quote when every byte in
    between is printable ASCII other than a backslash, else -1."""
    if i >= end or buf[i] != 34:
        return -1
    j = i + 1
    while j < end:
        c = buf[j]
        if c == 34:
            return j + 1
        if c < 32 or c > 126 or c == 92:
            return -1
        j += 1
    return -1


@njit(cache=True)
def _literal_end(buf: np.ndarray, i: int, end: int, word: bytes) -> int:
    n = len(word)
    if i + n > end:
        return -1
    for m in range(n):
        if buf[i + m] != word[m]:
            return -1
    return i + n


@njit(cache=True)
def _scalar_end(buf: np.ndarray, i: int, end: int) -> int:
    """The index after a plain scalar at ``i`` (a string as ``_plain_string_end`` takes it,
    a number, true, false or null), or -1 for anything else (objects, arrays, escapes)."""
    if i >= end:
        return -1
    c = buf[i]
    if c == 34:
        return _plain_string_end(buf, i, end)
    if c == 45 or 48 <= c <= 57:
        return number_end(buf, i, end)
    if c == 116:
        return _literal_end(buf, i, end, b"true")
    if c == 102:
        return _literal_end(buf, i, end, b"false")
    if c == 110:
        return _literal_end(buf, i, end, b"null")
    return -1


@njit(cache=True)
def _levels_end(buf: np.ndarray, i: int, end: int) -> int:
    """The index after a JSON array of non-empty arrays of strings and numbers at ``i``
    (``[]`` included), or -1."""
    if i >= end or buf[i] != 91:
        return -1
    i = skip_space(buf, i + 1, end)
    if i < end and buf[i] == 93:
        return i + 1
    while True:
        if i >= end or buf[i] != 91:
            return -1
        i = skip_space(buf, i + 1, end)
        while True:  # the fields of one level
            if i >= end:
                return -1
            c = buf[i]
            if c == 34:
                j = _plain_string_end(buf, i, end)
            elif c == 45 or 48 <= c <= 57:
                j = number_end(buf, i, end)
            else:
                return -1
            if j < 0:
                return -1
            i = skip_space(buf, j, end)
            if i >= end:
                return -1
            if buf[i] == 44:
                i = skip_space(buf, i + 1, end)
                continue
            if buf[i] != 93:
                return -1
            i += 1
            break
        i = skip_space(buf, i, end)
        if i >= end:
            return -1
        if buf[i] == 44:
            i = skip_space(buf, i + 1, end)
            continue
        if buf[i] != 93:
            return -1
        return i + 1


@njit(cache=True)
def _flat_objects_end(buf: np.ndarray, i: int, end: int) -> int:
    """The index after a JSON array of one or more objects whose values are plain scalars
    (``_scalar_end``) at ``i``, or -1."""
    if i >= end or buf[i] != 91:
        return -1
    i = skip_space(buf, i + 1, end)
    while True:
        if i >= end or buf[i] != 123:
            return -1
        i += 1
        while True:
            _, _, i = _key(buf, i, end)
            if i < 0:
                return -1
            j = _scalar_end(buf, i, end)
            if j < 0:
                return -1
            i, closed = after_member(buf, j, end)
            if i < 0:
                return -1
            if closed:
                break
        i = skip_space(buf, i, end)
        if i >= end:
            return -1
        if buf[i] == 93:
            return i + 1
        if buf[i] != 44:
            return -1
        i = skip_space(buf, i + 1, end)


@njit(cache=True)
def _int_value(buf: np.ndarray, i: int, end: int, signed: bool, digits: int) -> tuple[int, int]:
    """A plain integer at ``i``, bare or in quotes (decode reads both): optional '-' when
    ``signed``, no leading zeros, at most ``digits`` digits. (value, index after) or (0, -1)."""
    quoted = i < end and buf[i] == 34
    j = i + 1 if quoted else i
    negative = False
    if signed and j < end and buf[j] == 45:
        negative = True
        j += 1
    k = j
    v = 0
    while j < end and 48 <= buf[j] <= 57:
        v = v * 10 + (int(buf[j]) - 48)
        j += 1
    n = j - k
    if n == 0 or n > digits or (n > 1 and buf[k] == 48) or (negative and v == 0):
        return 0, -1
    if quoted:
        if j >= end or buf[j] != 34:
            return 0, -1
        j += 1
    return (-v if negative else v), j


@njit(cache=True)
def _key(buf: np.ndarray, i: int, end: int) -> tuple[int, int, int]:
    """A key at ``i`` (after whitespace): (key start, key length, index of its value after
    the colon and whitespace), or (0, 0, -1)."""
    i = skip_space(buf, i, end)
    j = _plain_string_end(buf, i, end)
    if j < 0:
        return 0, 0, -1
    k = skip_space(buf, j, end)
    if k >= end or buf[k] != 58:  # ':'
        return 0, 0, -1
    k = skip_space(buf, k + 1, end)
    if k >= end:
        return 0, 0, -1
    return i + 1, j - i - 2, k


@njit(cache=True)
def _scan_arg(buf: np.ndarray, i: int, end: int, row: np.ndarray) -> int:
    """The ``arg`` object at ``i``: instId's key and the channel's depth (``T_SCRATCH``)
    into ``row``, or ``T_SCRATCH2`` 1 for a mark channel. The index after the object, or
    -1 (another channel)."""
    if buf[i] != 123:
        return -1
    seen = 0
    i += 1
    while True:
        k0, klen, i = _key(buf, i, end)
        if i < 0:
            return -1
        if key_is(buf, k0, klen, b"channel"):
            if seen & 1:
                return -1
            seen |= 1
            j = _plain_string_end(buf, i, end)
            if j < 0:
                return -1
            n = j - i - 2
            if key_is(buf, i + 1, n, b"books"):
                row[T_SCRATCH] = DEPTH_BOOKS
            elif key_is(buf, i + 1, n, b"books-l2-tbt"):
                row[T_SCRATCH] = DEPTH_L2_TBT
            elif key_is(buf, i + 1, n, b"books50-l2-tbt"):
                row[T_SCRATCH] = DEPTH_50_L2_TBT
            elif (
                key_is(buf, i + 1, n, b"mark-price")
                or key_is(buf, i + 1, n, b"funding-rate")
                or key_is(buf, i + 1, n, b"index-tickers")
            ):
                row[T_SCRATCH2] = 1  # a mark channel: never a book
            else:
                return -1
        elif key_is(buf, k0, klen, b"instId"):
            if seen & 2:
                return -1
            seen |= 2
            j = _plain_string_end(buf, i, end)
            if j < 0:
                return -1
            h, j = hash_string(buf, i, end)
            if j < 0:
                return -1
            row[T_SYMBOL_KEY] = h
        else:
            j = _scalar_end(buf, i, end)
            if j < 0:
                return -1
        i, closed = after_member(buf, j, end)
        if i < 0:
            return -1
        if closed:
            return i if seen == 3 else -1


@njit(cache=True)
def _scan_data(buf: np.ndarray, i: int, end: int, row: np.ndarray) -> int:
    """The one entry of ``data`` at ``i``: levels, ts, ids and checksum into ``row``. The
    index after the object, or -1."""
    if buf[i] != 123:
        return -1
    seen = 0
    i += 1
    while True:
        k0, klen, i = _key(buf, i, end)
        if i < 0:
            return -1
        bit = 0
        j = -1
        if key_is(buf, k0, klen, b"asks"):
            bit = _ASKS
            j = _levels_end(buf, i, end)
            row[T_ASK_START] = i
            row[T_ASK_END] = j
        elif key_is(buf, k0, klen, b"bids"):
            bit = _BIDS
            j = _levels_end(buf, i, end)
            row[T_BID_START] = i
            row[T_BID_END] = j
        elif key_is(buf, k0, klen, b"ts"):
            bit = _TS
            v, j = _int_value(buf, i, end, False, TS_DIGITS)
            row[T_TS_NS] = v * MS
        elif key_is(buf, k0, klen, b"checksum"):
            bit = _CHECKSUM
            v, j = _int_value(buf, i, end, True, INT_DIGITS)
            row[T_CHECKSUM] = v
            row[T_HAS_CHECKSUM] = 1 if v != 0 else 0
        elif key_is(buf, k0, klen, b"seqId"):
            bit = _SEQ
            v, j = _int_value(buf, i, end, True, INT_DIGITS)
            row[T_FIRST] = v
            row[T_LAST] = v
        elif key_is(buf, k0, klen, b"prevSeqId"):
            bit = _PREV_SEQ
            v, j = _int_value(buf, i, end, True, INT_DIGITS)
            row[T_PREV] = v
        elif key_is(buf, k0, klen, b"fundingTime"):
            return -1  # decode reads it as an integer: let decode judge
        else:
            j = _scalar_end(buf, i, end)
        if j < 0 or seen & bit:
            return -1
        seen |= bit
        i, closed = after_member(buf, j, end)
        if i < 0:
            return -1
        if closed:
            required = _ASKS | _BIDS | _TS
            return i if seen & required == required else -1


@njit(cache=True)
def _scan_frame(buf: np.ndarray, i: int, end: int, row: np.ndarray) -> int:
    """Scan the frame ``buf[i:end]`` (``i`` past leading whitespace) into ``row``.
    Returns SCAN_BOOK or SCAN_OTHER."""
    if (
        end - i == 4
        and buf[i] == 112
        and buf[i + 1] == 111
        and buf[i + 2] == 110
        and buf[i + 3] == 103
    ):
        return SCAN_SIDE  # "pong", the answer to our keepalive
    if i >= end or buf[i] != 123:
        return SCAN_OTHER
    seen = 0
    action = 0
    i += 1
    while True:
        k0, klen, i = _key(buf, i, end)
        if i < 0:
            return SCAN_OTHER
        bit = 0
        j = -1
        if key_is(buf, k0, klen, b"arg"):
            bit = _ARG
            j = _scan_arg(buf, i, end, row)
        elif row[T_SCRATCH2] != 0:  # a mark channel's frame: "arg" and "data" only
            if not key_is(buf, k0, klen, b"data") or seen & _DATA:
                return SCAN_OTHER
            bit = _DATA
            j = _flat_objects_end(buf, i, end)
        elif key_is(buf, k0, klen, b"action"):
            bit = _ACTION
            j = _plain_string_end(buf, i, end)
            if j >= 0:
                n = j - i - 2
                if key_is(buf, i + 1, n, b"update"):
                    action = ACTION_UPDATE
                elif key_is(buf, i + 1, n, b"snapshot"):
                    action = ACTION_SNAPSHOT
                else:
                    return SCAN_OTHER
        elif key_is(buf, k0, klen, b"data"):
            bit = _DATA
            if buf[i] != 91:  # '[': exactly one entry
                return SCAN_OTHER
            k = skip_space(buf, i + 1, end)
            if k >= end:
                return SCAN_OTHER
            k = _scan_data(buf, k, end, row)
            if k < 0:
                return SCAN_OTHER
            k = skip_space(buf, k, end)
            if k >= end or buf[k] != 93:
                return SCAN_OTHER  # several entries (or none): decode
            j = k + 1
        elif (
            key_is(buf, k0, klen, b"event")
            or key_is(buf, k0, klen, b"code")
            or key_is(buf, k0, klen, b"msg")
        ):
            return SCAN_OTHER  # an event, or fields decode reads with their own types
        else:
            j = _scalar_end(buf, i, end)
        if j < 0 or seen & bit:
            return SCAN_OTHER
        seen |= bit
        i, closed = after_member(buf, j, end)
        if i < 0:
            return SCAN_OTHER
        if closed:
            break
    if skip_space(buf, i, end) != end:
        return SCAN_OTHER
    if row[T_SCRATCH2] != 0:
        return SCAN_SIDE if seen == _ARG | _DATA else SCAN_OTHER
    if seen != _ARG | _ACTION | _DATA:
        return SCAN_OTHER
    if action == ACTION_SNAPSHOT:
        row[T_KIND] = KIND_SNAPSHOT
        row[T_PREV] = -1
        row[T_LIMIT] = row[T_SCRATCH]
    else:
        row[T_KIND] = KIND_DELTA
        row[T_LIMIT] = 0
    return SCAN_BOOK


@njit(cache=True)
def scan_book_frames(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, out: np.ndarray) -> int:
    """Scan frame k in ``buf[starts[k]:ends[k]]`` into row k of the scan table ``out``
    (``feeds.scan.new_table``). Returns the number of book frames found."""
    found = 0
    for k in range(starts.shape[0]):
        row = out[k]
        end = ends[k]
        i = skip_space(buf, starts[k], end)
        status = _scan_frame(buf, i, end, row)
        row[T_STATUS] = status
        if status == SCAN_BOOK:
            found += 1
    return found


@njit(cache=True, nogil=True)
def scan_book_frames_released(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    out: np.ndarray,
) -> int:
    """``scan_book_frames`` without holding the GIL (a replay's reader thread scans ahead of the
    replay); a separate entry, so that the live path's calls stay as they are."""
    return scan_book_frames(buf, starts, ends, out)
