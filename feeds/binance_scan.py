"""numba scanner of Binance ``depthUpdate`` frames: the batch hot path of the adapter.

``scan_depth_frames`` reads many raw frames laid back to back in one byte buffer and
returns, per frame, what the book store needs: a hash of the symbol, U, u, pu, E and the
byte ranges of the bid and ask level arrays (which the store's kernel then parses
exactly). A frame that is not a well-formed ``depthUpdate`` (acks, other channels, mark
price, anything malformed) is marked for the adapter's msgspec ``decode``, which handles
or rejects it with a clear error; the scanner never guesses.

Grammar handled: a JSON object, optionally wrapped as ``{"stream":..,"data":{..}}``,
keys in any order, whitespace anywhere JSON allows it. Keys are read as whole strings, so
``"s"`` never matches ``"stream"``. Duplicate keys make the frame go to ``decode``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from feeds.scan import (
    SCAN_BOOK,
    SCAN_OTHER,
    SCAN_SIDE,
    T_ASK_END,
    T_ASK_START,
    T_BID_END,
    T_BID_START,
    T_FIRST,
    T_LAST,
    T_PREV,
    T_SCRATCH,
    T_STATUS,
    T_SYMBOL_KEY,
    T_TS_NS,
    hash_string,
    is_space,
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

FRAME_DEPTH = SCAN_BOOK  # a depthUpdate with every field the book needs
FRAME_OTHER = SCAN_OTHER  # anything else: hand the frame to the adapter's decode

MS = 1_000_000

_space = is_space
_skip_string = skip_string
_skip_value = skip_value


@njit(cache=True)
def _scan_object(buf: np.ndarray, i: int, end: int, row: np.ndarray) -> int:
    """Scan the object at ``i`` into ``row``; recurse into "data". Returns FRAME_*."""
    if buf[i] != 123:
        return FRAME_OTHER
    i += 1
    is_depth = False
    is_mark = False  # "e" is "markPriceUpdate": not a book event (decode reads it)
    inner = 0  # what the "data" object held: FRAME_DEPTH or SCAN_SIDE (0: no "data")
    seen = 0  # bit per field
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
            if inner:
                return FRAME_OTHER  # "data" twice
            inner = _scan_object(buf, i, end, row)
            if inner != FRAME_DEPTH and inner != SCAN_SIDE:
                return FRAME_OTHER
            i = row[F_OBJECT_END]
            continue
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
        return inner if seen == 0 else FRAME_OTHER
    if is_mark:
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
            status = _scan_object(buf, i, end, row)
            if status == FRAME_DEPTH or status == SCAN_SIDE:
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
