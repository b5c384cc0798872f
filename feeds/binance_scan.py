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

# output columns
F_STATUS = 0  # FRAME_* below
F_SYMBOL_HASH = 1  # symbol_hash() of the "s" value
F_FIRST = 2  # U
F_LAST = 3  # u
F_PREV = 4  # pu (-1 when absent)
F_TS_MS = 5  # E
F_BID_START = 6  # byte range of the "b" array inside the buffer
F_BID_END = 7
F_ASK_START = 8
F_ASK_END = 9
F_OBJECT_END = 10  # scratch: index after the object just scanned
N_FRAME = 11

FRAME_DEPTH = 1  # a depthUpdate with every field the book needs
FRAME_OTHER = 2  # anything else: hand the frame to the adapter's decode

FNV_OFFSET = np.uint64(14695981039346656037)
FNV_PRIME = np.uint64(1099511628211)


def symbol_hash(symbol: str) -> int:
    """FNV-1a 64 of the symbol's bytes as a signed int64 (what the scanner computes)."""
    h = 14695981039346656037
    for byte in symbol.encode():
        h ^= byte
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


@njit(cache=True, inline="always")
def _space(c: int) -> bool:
    return c == 32 or c == 9 or c == 10 or c == 13


@njit(cache=True)
def _skip_string(buf: np.ndarray, i: int, end: int) -> int:
    """``i`` at an opening quote: index after the closing quote, or -1."""
    i += 1
    while i < end:
        c = buf[i]
        if c == 92:  # backslash
            i += 2
            continue
        if c == 34:
            return i + 1
        i += 1
    return -1


@njit(cache=True)
def _skip_value(buf: np.ndarray, i: int, end: int) -> int:
    """Index after the JSON value starting at ``i`` (strings, arrays, objects, scalars), or -1."""
    c = buf[i]
    if c == 34:
        return _skip_string(buf, i, end)
    if c == 91 or c == 123:  # '[' or '{': count brackets, skipping strings
        depth = 0
        while i < end:
            c = buf[i]
            if c == 34:
                i = _skip_string(buf, i, end)
                if i < 0:
                    return -1
                continue
            if c == 91 or c == 123:
                depth += 1
            elif c == 93 or c == 125:
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return -1
    while i < end:
        c = buf[i]
        if c == 44 or c == 125 or c == 93 or _space(c):
            return i
        i += 1
    return i


@njit(cache=True)
def _int(buf: np.ndarray, i: int, end: int) -> tuple[int, int]:
    """Parse a non-negative JSON integer at ``i``: (value, index after) or (-1, -1)."""
    v = 0
    j = i
    while j < end and 48 <= buf[j] <= 57:
        v = v * 10 + (buf[j] - 48)
        j += 1
    if j == i or j - i > 18:
        return -1, -1
    return v, j


@njit(cache=True)
def _scan_object(buf: np.ndarray, i: int, end: int, row: np.ndarray) -> int:
    """Scan the object at ``i`` into ``row``; recurse into "data". Returns FRAME_*."""
    if buf[i] != 123:
        return FRAME_OTHER
    i += 1
    is_depth = False
    inner = False  # the "data" object held a depthUpdate
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
            elif c0 == 115:  # "s"
                bit = 2
                if buf[i] != 34:
                    return FRAME_OTHER
                h = FNV_OFFSET
                j = i + 1
                while j < end and buf[j] != 34:
                    if buf[j] == 92:
                        return FRAME_OTHER
                    h = (h ^ np.uint64(buf[j])) * FNV_PRIME
                    j += 1
                if j >= end or j == i + 1:
                    return FRAME_OTHER
                row[F_SYMBOL_HASH] = np.int64(h)
            elif c0 == 85 or c0 == 117 or c0 == 69:  # "U", "u", "E": integers
                if c0 == 85:
                    bit, col = 4, F_FIRST
                elif c0 == 117:
                    bit, col = 8, F_LAST
                else:
                    bit, col = 16, F_TS_MS
                v, j = _int(buf, i, end)
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
            v, j = _int(buf, i, end)
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
            if inner or _scan_object(buf, i, end, row) != FRAME_DEPTH:
                return FRAME_OTHER
            inner = True
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
        return FRAME_DEPTH if seen == 0 else FRAME_OTHER
    # e, s, U, u, E, b, a are required
    if is_depth and (seen & 127) == 127:
        return FRAME_DEPTH
    return FRAME_OTHER


@njit(cache=True)
def scan_depth_frames(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, out: np.ndarray
) -> int:
    """Scan frame k in ``buf[starts[k]:ends[k]]`` into ``out[k]``. Returns depth frames found."""
    found = 0
    for k in range(starts.shape[0]):
        row = out[k]
        row[F_PREV] = -1
        i = starts[k]
        end = ends[k]
        while i < end and _space(buf[i]):
            i += 1
        status = FRAME_OTHER
        if i < end:
            status = _scan_object(buf, i, end, row)
            if status == FRAME_DEPTH:
                j = row[F_OBJECT_END]
                while j < end and _space(buf[j]):
                    j += 1
                if j != end:  # bytes after the object: not a frame we vouch for
                    status = FRAME_OTHER
        row[F_STATUS] = status
        if status == FRAME_DEPTH:
            found += 1
    return found
