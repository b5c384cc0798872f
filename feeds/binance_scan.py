"""numba scanner of Binance ``depthUpdate`` frames: the batch hot path of the adapter.

``scan_depth_frames`` reads many raw frames laid back to back in one byte buffer and
returns, per frame, what the book store needs: a hash of the symbol, U, u, pu, E and the
byte ranges of the bid and ask level arrays (which the store's kernel then parses
exactly). A USD-M ``markPriceUpdate`` whose prices are plain decimal strings is read in
full (``SCAN_MARK``: mark, index, funding, next funding time and event time, as decode
reads them), so a replay's mark prices (a sixth of its records) skip the per-frame decode.
A frame that is not a well-formed ``depthUpdate`` or such a mark price (acks, other
channels, anything malformed) is marked for the adapter's msgspec ``decode``, which
handles or rejects it with a clear error; the scanner never guesses.

Grammar handled: a JSON object, optionally wrapped as ``{"stream":..,"data":{..}}``,
keys in any order, whitespace anywhere JSON allows it. Keys are read as whole strings, so
``"s"`` never matches ``"stream"``. Duplicate keys make the frame go to ``decode``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from feeds.scan import (
    SCAN_BOOK,
    SCAN_MARK,
    SCAN_OTHER,
    SCAN_SIDE,
    T_ASK_END,
    T_ASK_START,
    T_BID_END,
    T_BID_START,
    T_FIRST,
    T_FUNDING_RATE,
    T_INDEX_PRICE,
    T_LAST,
    T_MARK_PRICE,
    T_NEXT_FUNDING_NS,
    T_PREV,
    T_SCRATCH,
    T_SCRATCH2,
    T_STATUS,
    T_SYMBOL_KEY,
    T_TS_NS,
    hash_string,
    is_space,
    key_is,
    parse_decimal,
    parse_int,
    skip_string,
    skip_value,
    value_is,
)

# the shared scan table's columns this scanner fills (feeds.scan)
F_STATUS = T_STATUS
F_SYMBOL_HASH = T_SYMBOL_KEY
F_FIRST = T_FIRST  # U
F_LAST = T_LAST  # u
F_PREV = T_PREV  # pu (-1 when absent)
F_TS_MS = T_TS_NS  # E, in ms while scanning; ns once the frame is accepted
F_BID_START = T_BID_START
F_BID_END = T_BID_END
F_ASK_START = T_ASK_START
F_ASK_END = T_ASK_END
F_OBJECT_END = T_SCRATCH  # index after the object just scanned
F_IN_DATA = T_SCRATCH2  # 1 while the "data" object is scanned

FRAME_DEPTH = SCAN_BOOK  # a depthUpdate with every field the book needs
FRAME_OTHER = SCAN_OTHER  # anything else: hand the frame to the adapter's decode

MS = 1_000_000
MAX_TIME_MS = 9_000_000_000_000  # times in ns stay inside int64 (decode's are Python ints)
# the mark fields' bits (``mark_seen``): the next funding time and the three prices
_M_T, _M_P, _M_I, _M_R = 1, 2, 4, 8

_space = is_space
_skip_string = skip_string
_skip_value = skip_value


@njit(cache=True)
def _scan_object(buf: np.ndarray, i: int, end: int, row: np.ndarray) -> int:
    """Scan the object at ``i`` into ``row``; recurse into "data" (decode reads the "data"
    of the frame's own object only). Returns FRAME_*, SCAN_SIDE or SCAN_MARK."""
    if buf[i] != 123:
        return FRAME_OTHER
    i += 1
    # the frame's own object, not its "data" (a flag in the row rather than an argument:
    # numba's cache loads a recursive function with a bool argument into a crash)
    top = row[F_IN_DATA] == 0
    is_depth = False
    is_mark = False  # "e" is "markPriceUpdate": not a book event (decode reads it)
    inner = 0  # what the "data" object held: FRAME_DEPTH, SCAN_SIDE or SCAN_MARK (0: none)
    seen = 0  # bit per field
    # a mark price's own fields (T, p, i, r): read wherever they are, and only a mark price
    # needs them right (decode keeps p, i and r raw, and reads them for a mark price only)
    mark_seen = 0
    mark_ok = True  # every mark field and the envelope's typed fields as this scanner reads
    prices = row.view(np.float64)
    prices[T_MARK_PRICE] = np.nan
    prices[T_INDEX_PRICE] = np.nan
    prices[T_FUNDING_RATE] = np.nan
    row[T_NEXT_FUNDING_NS] = 0
    while True:
        while i < end and _space(buf[i]):
            i += 1
        if i >= end:
            return FRAME_OTHER
        if buf[i] == 125:  # '}'
            row[F_OBJECT_END] = i + 1
            break
        if buf[i] == 44:
            i += 1
            continue
        if buf[i] != 34:
            return FRAME_OTHER
        k0 = i + 1
        i = _skip_string(buf, i, end)
        if i < 0:
            return FRAME_OTHER
        klen = i - 1 - k0
        while i < end and _space(buf[i]):
            i += 1
        if i >= end or buf[i] != 58:  # ':'
            return FRAME_OTHER
        i += 1
        while i < end and _space(buf[i]):
            i += 1
        if i >= end:
            return FRAME_OTHER
        c0 = buf[k0]
        bit = 0
        if klen == 1:
            if c0 == 101:  # "e"
                bit = 1
                # value must be the string "depthUpdate"
                if buf[i] == 34 and i + 12 < end and buf[i + 12] == 34:
                    is_depth = (
                        buf[i + 1] == 100  # d
                        and buf[i + 2] == 101  # e
                        and buf[i + 3] == 112  # p
                        and buf[i + 4] == 116  # t
                        and buf[i + 5] == 104  # h
                        and buf[i + 6] == 85  # U
                        and buf[i + 7] == 112  # p
                        and buf[i + 8] == 100  # d
                        and buf[i + 9] == 97  # a
                        and buf[i + 10] == 116  # t
                        and buf[i + 11] == 101  # e
                    )
                is_mark = value_is(buf, i, end, b"markPriceUpdate")
            elif c0 == 84 or c0 == 112 or c0 == 105 or c0 == 114:  # "T", "p", "i", "r"
                if c0 == 84:
                    mbit = _M_T
                    v, j = parse_int(buf, i, end)
                    if buf[i] == 34 or v < 0 or v > MAX_TIME_MS:
                        mark_ok = False
                    else:
                        row[T_NEXT_FUNDING_NS] = v * MS
                else:
                    if c0 == 112:
                        mbit, col = _M_P, T_MARK_PRICE
                    elif c0 == 105:
                        mbit, col = _M_I, T_INDEX_PRICE
                    else:
                        mbit, col = _M_R, T_FUNDING_RATE
                    x, j = parse_decimal(buf, i, end)
                    if j < 0:
                        mark_ok = False
                    else:
                        prices[col] = x
                if (mark_seen & mbit) or inner:
                    mark_ok = False  # twice, or on the envelope of a "data"
                mark_seen |= mbit
            elif c0 == 115:  # "s"
                bit = 2
                h, j = hash_string(buf, i, end)
                if j < 0:
                    return FRAME_OTHER
                row[F_SYMBOL_HASH] = h
            elif c0 == 85 or c0 == 117 or c0 == 69:  # "U", "u", "E": integers
                if c0 == 85:
                    bit, col = 4, F_FIRST
                elif c0 == 117:
                    bit, col = 8, F_LAST
                else:
                    bit, col = 16, F_TS_MS
                if buf[i] == 34:
                    return FRAME_OTHER  # ids and times are bare numbers here
                v, j = parse_int(buf, i, end)
                if v < 0:
                    return FRAME_OTHER
                row[col] = v
            elif c0 == 98:  # "b"
                bit = 32
                if buf[i] != 91:
                    return FRAME_OTHER
                row[F_BID_START] = i
            elif c0 == 97:  # "a"
                bit = 64
                if buf[i] != 91:
                    return FRAME_OTHER
                row[F_ASK_START] = i
        elif klen == 2 and c0 == 112 and buf[k0 + 1] == 117:  # "pu"
            bit = 128
            if buf[i] == 34:
                return FRAME_OTHER
            v, j = parse_int(buf, i, end)
            if v < 0:
                return FRAME_OTHER
            row[F_PREV] = v
        elif (
            klen == 4
            and c0 == 100
            and buf[k0 + 1] == 97
            and buf[k0 + 2] == 116
            and buf[k0 + 3] == 97
        ):  # "data": the combined-stream payload
            if inner or not top:
                return FRAME_OTHER  # "data" twice, or inside "data" (decode ignores that)
            if mark_seen:
                mark_ok = False  # mark fields on the envelope: decode checks their types
            row[F_IN_DATA] = 1
            inner = _scan_object(buf, i, end, row)
            if inner != FRAME_DEPTH and inner != SCAN_SIDE and inner != SCAN_MARK:
                return FRAME_OTHER
            i = row[F_OBJECT_END]
            continue
        elif (
            top
            and buf[i] != 34
            and (
                (klen == 6 and key_is(buf, k0, klen, b"stream"))
                or (klen == 3 and key_is(buf, k0, klen, b"msg"))
            )
        ):
            mark_ok = False  # decode wants a string (or null) there
        if bit != 0 and inner:
            return FRAME_OTHER  # book fields on the envelope too: let decode judge
        if bit != 0:
            if seen & bit:
                return FRAME_OTHER  # duplicate key
            seen |= bit
        j = _skip_value(buf, i, end)
        if j < 0:
            return FRAME_OTHER
        if bit == 32:
            row[F_BID_END] = j
        elif bit == 64:
            row[F_ASK_END] = j
        i = j
    if inner:
        if seen != 0:
            return FRAME_OTHER
        if inner == SCAN_MARK and not mark_ok:
            return SCAN_SIDE
        return inner
    if is_mark:
        # the symbol, the event time and every mark field present read in full: the row is
        # the MarkPriceEvent decode makes; else decode reads it
        if mark_ok and (seen & 2) and row[F_TS_MS] <= MAX_TIME_MS:
            row[F_TS_MS] *= MS
            return SCAN_MARK
        return SCAN_SIDE
    # e, s, U, u, E, b, a are required
    if is_depth and (seen & 127) == 127:
        return FRAME_DEPTH
    return FRAME_OTHER


@njit(cache=True)
def scan_depth_frames(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, out: np.ndarray
) -> int:
    """Scan frame k in ``buf[starts[k]:ends[k]]`` into row k of the scan table ``out``
    (``feeds.scan.new_table``). Returns depth frames found."""
    found = 0
    for k in range(starts.shape[0]):
        row = out[k]
        i = starts[k]
        end = ends[k]
        while i < end and _space(buf[i]):
            i += 1
        status = FRAME_OTHER
        if i < end:
            row[F_IN_DATA] = 0
            status = _scan_object(buf, i, end, row)
            if status == FRAME_DEPTH or status == SCAN_SIDE or status == SCAN_MARK:
                j = row[F_OBJECT_END]
                while j < end and _space(buf[j]):
                    j += 1
                if j != end:  # bytes after the object: not a frame we vouch for
                    status = FRAME_OTHER
        row[F_STATUS] = status
        if status == FRAME_DEPTH:
            row[F_TS_MS] *= MS
            found += 1
    return found


@njit(cache=True, nogil=True)
def scan_depth_frames_released(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    out: np.ndarray,
) -> int:
    """``scan_depth_frames`` without holding the GIL (a replay's reader thread scans ahead of the
    replay); a separate entry, so that the live path's calls stay as they are."""
    return scan_depth_frames(buf, starts, ends, out)
