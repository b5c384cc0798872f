"""The batch reader's kernel: a recording's lines in one numba call, columns out.

A recording line is a small JSON object (``feeds.recording``); most are websocket frames of
a known venue, written by liqmon's own recorder. :func:`scan_records` reads many such lines
laid back to back and writes, per line, its receive time, venue, and the websocket frame
unescaped into one output buffer (the frames of a whole block back to back, ready for the
venues' batch scanners), without a Python object per line.

It vouches only for what it reads completely: a line that is not exactly an object of the
five fields (``ts`` a plain non-negative decimal below 1e11, ``venue`` one of the given
names, ``kind`` "ws", ``url`` a plain ASCII string, ``data`` an ASCII string whose escapes
are ``\\"``, ``\\\\`` or ``\\/``) is ``LINE_SLOW``: the caller decodes it with msgspec, which
accepts, converts or rejects it as the line-by-line reader always did (an HTTP answer, an
unknown venue, a ``\\u`` escape, a malformed line with its error). The kernel never
guesses; it releases the GIL (a reader thread runs it beside the replay).
"""

from __future__ import annotations

import numpy as np
from numba import njit

ROW_FAST = 0  # a websocket frame of a known venue, read in full
LINE_SLOW = 1  # anything else: decode the line with msgspec
LINE_BLANK = 2  # only whitespace
ROW_TS_TEXT = 3  # as ROW_FAST, but ``ts`` has more than 15 digits: float() of its text

_K_TS, _K_VENUE, _K_KIND, _K_URL, _K_DATA = 0, 1, 2, 3, 4
_ALL_KEYS = 31
_MAX_DIGITS = 15  # below 2**53: the digits are an exact float64
_MAX_INT_DIGITS = 11  # a receive time below 1e11 (the record's range)
_POW10 = np.array([float(10**k) for k in range(_MAX_DIGITS + 1)], dtype=np.float64)


@njit(cache=True, nogil=True)
def _ws(b: np.ndarray, i: int, end: int) -> int:
    """Past spaces, tabs and carriage returns; not a newline, which ends the line
    (``feeds.scan.skip_space`` skips newlines too, as a frame's JSON may hold them)."""
    while i < end and (b[i] == 32 or b[i] == 9 or b[i] == 13):
        i += 1
    return i


@njit(cache=True, nogil=True)
def _plain(b: np.ndarray, i: int, end: int) -> int:
    """``i`` at an opening quote of a string without escapes, control or non-ASCII bytes:
    the index after its closing quote, or -1."""
    if i >= end or b[i] != 34:
        return -1
    j = i + 1
    while j < end:
        c = b[j]
        if c == 34:
            return j + 1
        if c == 92 or c < 32 or c >= 128:
            return -1
        j += 1
    return -1


@njit(cache=True, nogil=True)
def _key(b: np.ndarray, k: int, size: int) -> int:
    """Which of the record's fields the key ``b[k:k + size]`` names (-1: none)."""
    if size == 2:
        return _K_TS if b[k] == 116 and b[k + 1] == 115 else -1  # ts
    if size == 3:
        return _K_URL if b[k] == 117 and b[k + 1] == 114 and b[k + 2] == 108 else -1  # url
    if size == 4:
        c1, c2, c3 = b[k + 1], b[k + 2], b[k + 3]
        if b[k] == 107 and c1 == 105 and c2 == 110 and c3 == 100:  # kind
            return _K_KIND
        if b[k] == 100 and c1 == 97 and c2 == 116 and c3 == 97:  # data
            return _K_DATA
        return -1
    if size == 5:
        c1, c2, c3, c4 = b[k + 1], b[k + 2], b[k + 3], b[k + 4]
        if b[k] == 118 and c1 == 101 and c2 == 110 and c3 == 117 and c4 == 101:  # venue
            return _K_VENUE
    return -1


@njit(cache=True, nogil=True)
def scan_records(
    text: np.ndarray,
    start: int,
    end: int,
    names: np.ndarray,
    name_starts: np.ndarray,
    out: np.ndarray,
    status: np.ndarray,
    ts: np.ndarray,
    code: np.ndarray,
    spans: np.ndarray,
) -> tuple[int, int, int]:
    """Read the lines of ``text[start:end]`` (``end`` just after a newline), as many as
    ``status`` has room for.

    ``names``: the venue names back to back, name k in ``names[name_starts[k]:
    name_starts[k + 1]]``. Per line n: ``status[n]`` (ROW_*/LINE_*), and for a row:
    ``ts[n]``, ``code[n]`` (the venue's index), ``spans[n]``: the frame's range in ``out``
    (0, 1), the URL's range in ``text`` (2, 3), the line's start (4) and the range of the
    ``ts`` text (5, 6). A line that is not a row has only its start (``spans[n, 4]``).
    Returns (lines read, bytes of ``out`` used, where the next line starts). ``out`` needs
    at most ``end - start`` bytes."""
    n = 0
    o = 0
    i = start
    n_names = name_starts.shape[0] - 1
    capacity = status.shape[0]
    while i < end and n < capacity:
        line = i
        spans[n, 4] = line
        st = LINE_SLOW
        o_line = o
        j = _ws(text, i, end)
        if j < end and text[j] == 10:
            st = LINE_BLANK
            j += 1
        elif j < end and text[j] == 123:  # {
            j = _ws(text, j + 1, end)
            seen = 0
            venue = -1
            long_ts = False
            ok = True
            while True:
                # a key
                k0 = j + 1
                k1 = _plain(text, j, end)
                if k1 < 0:
                    ok = False
                    break
                klen = k1 - 1 - k0
                key = _key(text, k0, klen)
                if key < 0 or (seen >> key) & 1:
                    ok = False
                    break
                seen |= 1 << key
                j = _ws(text, k1, end)
                if j >= end or text[j] != 58:  # :
                    ok = False
                    break
                j = _ws(text, j + 1, end)
                if key == _K_TS:
                    s = j
                    v = 0
                    digits = 0
                    if j < end and text[j] == 48:  # a leading zero is the whole integer part
                        j += 1
                        digits = 1
                    else:
                        while j < end and 48 <= text[j] <= 57:
                            v = v * 10 + (text[j] - 48) if digits < _MAX_DIGITS else v
                            digits += 1
                            j += 1
                    if digits == 0 or digits > _MAX_INT_DIGITS:
                        ok = False
                        break
                    fraction = 0
                    if j < end and text[j] == 46:  # .
                        j += 1
                        f0 = j
                        while j < end and 48 <= text[j] <= 57:
                            if digits < _MAX_DIGITS:
                                v = v * 10 + (text[j] - 48)
                                fraction += 1
                            digits += 1
                            j += 1
                        if j == f0:
                            ok = False
                            break
                    if j < end and (text[j] == 101 or text[j] == 69):  # an exponent
                        ok = False
                        break
                    spans[n, 5] = s
                    spans[n, 6] = j
                    if digits > _MAX_DIGITS:
                        long_ts = True
                        ts[n] = np.nan
                    else:
                        ts[n] = float(v) / _POW10[fraction]
                elif key == _K_DATA:
                    if j >= end or text[j] != 34:
                        ok = False
                        break
                    j += 1
                    spans[n, 0] = o
                    bad = False
                    while j < end:
                        c = text[j]
                        if c == 92:  # an escape: \" \\ \/ only (others: msgspec)
                            e = text[j + 1]
                            out[o] = e
                            o += 1
                            j += 2
                            if e != 34 and e != 92 and e != 47:
                                bad = True
                                break
                            continue
                        if c == 34 or c < 32 or c >= 128:
                            break
                        out[o] = c
                        o += 1
                        j += 1
                    if bad or j >= end or text[j] != 34:
                        ok = False
                        break
                    spans[n, 1] = o
                    j += 1
                else:
                    s = j + 1
                    j = _plain(text, j, end)
                    if j < 0:
                        ok = False
                        break
                    size = j - 1 - s
                    if key == _K_VENUE:
                        for k in range(n_names):
                            a = name_starts[k]
                            if name_starts[k + 1] - a != size:
                                continue
                            same = True
                            for t in range(size):
                                if names[a + t] != text[s + t]:
                                    same = False
                                    break
                            if same:
                                venue = k
                                break
                        if venue < 0:
                            ok = False
                            break
                    elif key == _K_KIND:
                        if size != 2 or text[s] != 119 or text[s + 1] != 115:  # "ws"
                            ok = False
                            break
                    else:
                        spans[n, 2] = s
                        spans[n, 3] = j - 1
                j = _ws(text, j, end)
                if j < end and text[j] == 44:  # ,
                    j = _ws(text, j + 1, end)
                    continue
                if j < end and text[j] == 125 and seen == _ALL_KEYS:  # }
                    j = _ws(text, j + 1, end)
                    ok = j < end and text[j] == 10
                    j += 1
                else:
                    ok = False
                break
            if ok:
                st = ROW_TS_TEXT if long_ts else ROW_FAST
                code[n] = venue
        if st == LINE_SLOW:
            o = o_line
            # to the end of this line
            j = line
            while j < end and text[j] != 10:
                j += 1
            j += 1
        status[n] = st
        n += 1
        i = j
    return n, o, i
