"""What every venue's batch frame scanner shares: the scan table and the frame joiner.

A scanner (``adapter.scanner``) reads many raw websocket frames laid back to back in one
byte buffer, in one numba call, and writes one row per frame into the *scan table*, an
int64 matrix whose columns are named here. A row whose ``T_STATUS`` is ``SCAN_BOOK`` is a
well-formed book event of one symbol: its symbol key (``symbol_key`` below, FNV-1a 64 of
the symbol's bytes), kind, sequence ids, venue time in ns, checksum, and the byte ranges
of its bid and ask level arrays inside the scan's buffer (JSON arrays of level arrays,
which the book store's kernel then parses exactly). Every other frame is ``SCAN_OTHER``
and goes through the adapter's ``decode``, which handles or rejects it with a clear error:
a scanner never guesses.

The buffer the ranges refer to is the joined frames for venues whose levels are already
arrays of arrays (Binance, OKX); a venue whose levels are objects (Coinbase, Kraken,
Hyperliquid) may write its levels as arrays into a buffer of its own and point there.

The table layout is shared so that one kernel on the pipeline's side turns any venue's
table into store events (``monitor.book.intake``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
from numba import njit

from monitor.domain import EventKind

# --- columns of the scan table: table[frame, T_*] ------------------------------------------
T_STATUS = 0  # SCAN_* below
T_SYMBOL_KEY = 1  # symbol_key() of the event's symbol
T_KIND = 2  # KIND_DELTA or KIND_SNAPSHOT (in-band snapshots: venues that send them)
T_FIRST = 3  # first sequence id, -1 when the venue has none
T_LAST = 4  # last sequence id, -1 when none
T_PREV = 5  # previous event's last id, -1 when none
T_TS_NS = 6  # venue time of the event, ns since the epoch
T_BID_START = 7  # byte range of the bid level array inside the scan's buffer
T_BID_END = 8
T_ASK_START = 9  # byte range of the ask level array
T_ASK_END = 10
T_LIMIT = 11  # snapshot: levels per side the venue sends (0 = full book)
T_CHECKSUM = 12  # the venue's checksum of the book after this event
T_HAS_CHECKSUM = 13  # 1: the event carries a checksum
T_SCRATCH = 14  # the scanner's own use (e.g. the end of the object just scanned)
T_SCRATCH2 = 15
# a SCAN_MARK row: mark price, index price and funding rate (float64 bits: read them through
# ``table.view(np.float64)``; NaN when the frame has none), next funding time in ns (0: none)
T_MARK_PRICE = 16
T_INDEX_PRICE = 17
T_FUNDING_RATE = 18
T_NEXT_FUNDING_NS = 19
N_SCAN = 20

SCAN_OTHER = 0  # not a book event the scanner vouches for: the adapter's decode
SCAN_BOOK = 1  # a well-formed book event
SCAN_TAKEN = 2  # written by the intake kernel: the event went to the store
SCAN_SIDE = 3  # not a book event of any book (Binance mark prices): the adapter's decode
# reads it, and its place among the book events does not matter, so it does not split a
# run of scanned events
SCAN_MARK = 4  # a mark price read in full (symbol key, T_TS_NS and the T_MARK_PRICE..
# columns hold what decode's MarkPriceEvent holds): no decode, and like SCAN_SIDE it does
# not split a run of scanned events

KIND_SNAPSHOT = int(EventKind.SNAPSHOT)
KIND_DELTA = int(EventKind.DELTA)

FNV_OFFSET = np.uint64(14695981039346656037)
FNV_PRIME = np.uint64(1099511628211)


ByteArray = npt.NDArray[np.uint8]
IntArray = npt.NDArray[np.int64]


def symbol_key(symbol: str) -> int:
    """FNV-1a 64 of the symbol's bytes as a signed int64 (what the scanners compute)."""
    h = 14695981039346656037
    for byte in symbol.encode():
        h ^= byte
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= 1 << 63 else h


def new_table(n: int) -> IntArray:
    """A scan table of ``n`` rows with every row's defaults: not a book event, a delta,
    no sequence ids, no checksum."""
    table = np.zeros((n, N_SCAN), dtype=np.int64)
    table[:, T_KIND] = KIND_DELTA
    table[:, T_FIRST : T_PREV + 1] = -1
    return table


def join_frames(frames: Sequence[bytes | str]) -> tuple[ByteArray, IntArray, IntArray]:
    """The frames back to back in one byte buffer, and each frame's start and end in it.

    Bytes are joined as they are; text frames (websockets hands them over as str) are
    encoded once, in one piece when they are all ASCII.
    """
    kinds = {type(f) for f in frames}
    raw = b""
    lens: IntArray | None = None
    if kinds == {bytes}:
        raw = b"".join(frames)  # type: ignore[arg-type]
        lens = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
    elif kinds == {str}:
        text = "".join(frames)  # type: ignore[arg-type]
        raw = text.encode()
        lens = np.fromiter(map(len, frames), dtype=np.int64, count=len(frames))
        if len(raw) != len(text):  # not all ASCII: character and byte offsets differ
            lens = None
    if lens is None:
        encoded = [f.encode() if isinstance(f, str) else bytes(f) for f in frames]
        raw = b"".join(encoded)
        lens = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    ends = np.cumsum(lens)
    return np.frombuffer(raw, dtype=np.uint8), ends - lens, ends


KernelT = TypeVar("KernelT", bound=Callable[..., Any])


def njit_without_nrt(kernel: KernelT) -> KernelT:
    """``njit(cache=True)`` for a kernel that allocates nothing, with numba's runtime (NRT)
    off (numba's own switch, which its string helpers use): the arrays the kernel is called
    with then come in without a reference-counted owner, so passing them on to its helpers
    costs no atomic increment and decrement (two per array per call: most of a scanner's
    time when it calls helpers per level). A kernel built so must not allocate."""
    return njit(cache=True, _nrt=False)(kernel)  # type: ignore[call-overload,no-any-return]


def njit_without_nrt_released(kernel: KernelT) -> KernelT:
    """:func:`njit_without_nrt` for a kernel that runs without holding the GIL."""
    return njit(cache=True, _nrt=False, nogil=True)(kernel)  # type: ignore[call-overload,no-any-return]


# --- small numba helpers the scanners share ------------------------------------------------
@njit(cache=True, inline="always")
def is_space(c: int) -> bool:
    return c == 32 or c == 9 or c == 10 or c == 13


@njit(cache=True)
def skip_space(buf: ByteArray, i: int, end: int) -> int:
    while i < end and is_space(buf[i]):
        i += 1
    return i


@njit(cache=True)
def skip_string(buf: ByteArray, i: int, end: int) -> int:
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
def skip_value(buf: ByteArray, i: int, end: int) -> int:
    """Index after the JSON value starting at ``i`` (strings, arrays, objects, scalars), or -1."""
    c = buf[i]
    if c == 34:
        return skip_string(buf, i, end)
    if c == 91 or c == 123:  # '[' or '{': count brackets, skipping strings
        depth = 0
        while i < end:
            c = buf[i]
            if c == 34:
                i = skip_string(buf, i, end)
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
        if c == 44 or c == 125 or c == 93 or is_space(c):
            return i
        i += 1
    return i


@njit(cache=True)
def parse_int(buf: ByteArray, i: int, end: int) -> tuple[int, int]:
    """A non-negative JSON integer at ``i``, bare or quoted: (value, index after) or (-1, -1)."""
    quoted = i < end and buf[i] == 34
    if quoted:
        i += 1
    v = 0
    j = i
    while j < end and 48 <= buf[j] <= 57:
        v = v * 10 + (int(buf[j]) - 48)
        j += 1
    if j == i or j - i > 18:
        return -1, -1
    if not quoted:  # JSON's grammar: no leading zero, and not a fraction or an exponent
        if buf[i] == 48 and j - i > 1:
            return -1, -1
        if j < end and (buf[j] == 46 or buf[j] == 101 or buf[j] == 69):
            return -1, -1
    if quoted:
        if j >= end or buf[j] != 34:
            return -1, -1
        j += 1
    return v, j


# 10**k as float64 for k <= 15, exact (ints convert exactly up to 2**53)
POW10_EXACT = np.array([float(10**k) for k in range(16)], dtype=np.float64)
DECIMAL_DIGITS = 15  # below 2**53: the digits are an exact float64 too


@njit(cache=True)
def parse_decimal(buf: ByteArray, i: int, end: int) -> tuple[float, int]:
    """The JSON string at ``i`` holding a plain decimal (``-?[0-9]+(\\.[0-9]+)?``, at most
    15 digits): (its float, index after the closing quote), or (NaN, -1).

    The float is Python's ``float()`` of the text, bit for bit: digits and power of ten
    are exact float64s, and one IEEE division rounds their quotient correctly (the fast
    path of Clinger's algorithm)."""
    if i >= end or buf[i] != 34:
        return np.nan, -1
    j = i + 1
    negative = j < end and buf[j] == 45  # '-'
    if negative:
        j += 1
    digits = 0
    fraction = -1  # digits after the point (-1: no point)
    v = 0
    while j < end:
        c = buf[j]
        if 48 <= c <= 57:
            v = v * 10 + (int(c) - 48)
            digits += 1
            if fraction >= 0:
                fraction += 1
        elif c == 46 and fraction < 0 and digits > 0:  # '.'
            fraction = 0
        else:
            break
        j += 1
    if j >= end or buf[j] != 34 or digits == 0 or digits > DECIMAL_DIGITS or fraction == 0:
        return np.nan, -1
    x = float(v) / POW10_EXACT[max(fraction, 0)]
    return (-x if negative else x), j + 1


@njit(cache=True)
def hash_string(buf: ByteArray, i: int, end: int) -> tuple[int, int]:
    """FNV-1a 64 of the JSON string at ``i`` (no escapes allowed, not empty):
    (hash as int64, index after the closing quote) or (0, -1)."""
    if i >= end or buf[i] != 34:
        return 0, -1
    h = FNV_OFFSET
    j = i + 1
    while j < end and buf[j] != 34:
        if buf[j] == 92:
            return 0, -1
        h = (h ^ np.uint64(buf[j])) * FNV_PRIME
        j += 1
    if j >= end or j == i + 1:
        return 0, -1
    return np.int64(h), j + 1  # type: ignore[return-value]


@njit(cache=True)
def key_at(buf: ByteArray, i: int, end: int) -> tuple[int, int, int]:
    """The object key at ``i`` (an opening quote, no escapes) and the ``:`` after it:
    (key start, key length, index of the value) or (0, 0, -1)."""
    if i >= end or buf[i] != 34:
        return 0, 0, -1
    k0 = i + 1
    j = k0
    while j < end and buf[j] != 34:
        if buf[j] == 92:  # an escaped key may spell a known one: decode reads it
            return 0, 0, -1
        j += 1
    if j >= end:
        return 0, 0, -1
    klen = j - k0
    j = skip_space(buf, j + 1, end)
    if j >= end or buf[j] != 58:  # ':'
        return 0, 0, -1
    j = skip_space(buf, j + 1, end)
    if j >= end:
        return 0, 0, -1
    return k0, klen, j


@njit(cache=True)
def after_member(buf: ByteArray, i: int, end: int) -> tuple[int, bool]:
    """After an object member's value: (index of the next key, False) after a ``,``;
    (index after the ``}``, True) at the end of the object; (-1, False) otherwise."""
    i = skip_space(buf, i, end)
    if i >= end:
        return -1, False
    if buf[i] == 44:  # ','
        return skip_space(buf, i + 1, end), False
    if buf[i] == 125:  # '}'
        return i + 1, True
    return -1, False


@njit(cache=True)
def number_end(buf: ByteArray, i: int, end: int) -> int:
    """A bare JSON number at ``i`` (``-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?``):
    the index after it, or -1."""
    j = i
    if j < end and buf[j] == 45:  # '-'
        j += 1
    if j >= end or not 48 <= buf[j] <= 57:
        return -1
    if buf[j] == 48:
        j += 1
    else:
        while j < end and 48 <= buf[j] <= 57:
            j += 1
    if j < end and buf[j] == 46:  # '.'
        j += 1
        d = j
        while j < end and 48 <= buf[j] <= 57:
            j += 1
        if j == d:
            return -1
    if j < end and (buf[j] == 101 or buf[j] == 69):  # 'e' / 'E'
        j += 1
        if j < end and (buf[j] == 43 or buf[j] == 45):
            j += 1
        d = j
        while j < end and 48 <= buf[j] <= 57:
            j += 1
        if j == d:
            return -1
    return j


@njit(cache=True)
def value_is(buf: ByteArray, i: int, end: int, word: bytes) -> bool:
    """The JSON value at ``i`` is the string ``word`` (an ASCII literal, no escapes)."""
    n = len(word)
    if i + n + 1 >= end or buf[i] != 34 or buf[i + n + 1] != 34:
        return False
    for m in range(n):
        if buf[i + 1 + m] != word[m]:
            return False
    return True


@njit(cache=True)
def key_is(buf: ByteArray, k0: int, klen: int, word: bytes) -> bool:
    """The key ``buf[k0:k0+klen]`` equals ``word`` (an ASCII literal)."""
    if klen != len(word):
        return False
    for m in range(klen):
        if buf[k0 + m] != word[m]:
            return False
    return True


@njit(cache=True, inline="always")
def literal_at(buf: ByteArray, i: int | np.uint64, word: bytes) -> bool:
    """``buf[i:i+len(word)]`` is ``word`` (the caller checked the bounds). Unsigned
    indices and no early exit: the compiler then drops the negative-index wrap-around and
    compares the bytes in a few wide steps."""
    d = 0
    u = np.uint64(i)
    for m in range(len(word)):
        d |= buf[u + np.uint64(m)] ^ word[m]
    return d == 0


@njit(cache=True)
def civil_days(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to the proleptic Gregorian date (month 1..12, year >= 1)."""
    y = year - 1 if month <= 2 else year
    era = y // 400
    yoe = y - era * 400
    mp = month - 3 if month > 2 else month + 9
    doy = (153 * mp + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@njit(cache=True)
def _digits(buf: ByteArray, i: int, n: int) -> int:
    """The ``n`` ASCII digits at ``i`` as an int, or -1."""
    v = 0
    for m in range(n):
        c = buf[i + m]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + (int(c) - 48)
    return v


@njit(cache=True)
def rfc3339_ns(buf: ByteArray, i: int, end: int) -> int:
    """Nanoseconds since the epoch of the UTC time ``buf[i:end]`` (a string's contents),
    or -1 when it is not exactly ``YYYY-MM-DDTHH:MM:SS[.fraction]Z``.

    Strict on purpose (scanners hand anything else to their venue's decode): upper-case
    ``T`` and ``Z``, a real calendar date, hour 0-23, minute and second 0-59 (no leap
    second), a fraction of one or more digits, read to 9 digits (ns) and truncated there.
    """
    n = end - i
    if n < 20:
        return -1
    if buf[i + 4] != 45 or buf[i + 7] != 45 or buf[i + 10] != 84:  # '-', '-', 'T'
        return -1
    if buf[i + 13] != 58 or buf[i + 16] != 58 or buf[end - 1] != 90:  # ':', ':', 'Z'
        return -1
    year = _digits(buf, i, 4)
    month = _digits(buf, i + 5, 2)
    day = _digits(buf, i + 8, 2)
    hour = _digits(buf, i + 11, 2)
    minute = _digits(buf, i + 14, 2)
    second = _digits(buf, i + 17, 2)
    if year < 1 or month < 1 or month > 12 or day < 1 or hour < 0 or hour > 23:
        return -1
    if minute < 0 or minute > 59 or second < 0 or second > 59:
        return -1
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if month == 2:
        month_days = 29 if leap else 28
    elif month == 4 or month == 6 or month == 9 or month == 11:
        month_days = 30
    else:
        month_days = 31
    if day > month_days:
        return -1
    fraction = 0
    if n > 20:
        if buf[i + 19] != 46 or n == 21:  # '.' and at least one digit
            return -1
        scale = 100_000_000
        for m in range(i + 20, end - 1):
            c = buf[m]
            if c < 48 or c > 57:
                return -1
            fraction += (int(c) - 48) * scale
            scale //= 10
    seconds = civil_days(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return seconds * 1_000_000_000 + fraction


@njit(cache=True, inline="always")
def write_level(out: ByteArray, o: int, buf: ByteArray, p0: int, p1: int, q0: int, q1: int) -> int:
    """Write ``[<buf[p0:p1]>,<buf[q0:q1]>]`` (a level array, the price and size text as
    sent) at ``out[o:]``; returns the index after it."""
    out[o] = 91  # '['
    o += 1
    for m in range(p0, p1):
        out[o] = buf[m]
        o += 1
    out[o] = 44  # ','
    o += 1
    for m in range(q0, q1):
        out[o] = buf[m]
        o += 1
    out[o] = 93  # ']'
    return o + 1


@njit(cache=True, inline="always")
def after_level(buf: ByteArray, i: int, end: int, out: ByteArray, o: int) -> tuple[int, int, bool]:
    """After one level object of an array being rewritten: at ``,`` write it and return
    (index of the next level, index after the comma, False); at ``]`` close the written
    array and return (index after the array, index after it, True); else (-1, o, False)."""
    i = skip_space(buf, i, end)
    if i >= end:
        return -1, o, False
    if buf[i] == 93:  # ']'
        out[o] = 93
        return i + 1, o + 1, True
    if buf[i] != 44:  # ','
        return -1, o, False
    out[o] = 44
    return skip_space(buf, i + 1, end), o + 1, False
