"""numba kernels of the book store: parse level arrays, sync, apply, read the top.

Layout: each side of each book is a sorted run of *keys* with the best level LAST, so the
usual change near the top of the book moves only a few elements. The key of a bid is its
price (in price units), the key of an ask is minus its price; both sides are then sorted
ascending and share one insert/delete routine. Index 0 is the deepest level held.

Every kernel here has a plain-Python twin in ``monitor.book.reference`` that the property
tests compare it with.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from feeds.scan import njit_without_nrt_released
from monitor.book.layout import (
    CHECK_KRAKEN,
    CHECK_OKX,
    E_ASK_LEN,
    E_BEST_ASK,
    E_BEST_BID,
    E_BID_LEN,
    E_BOOK,
    E_CHECKSUM,
    E_FIRST,
    E_HAS_CHECKSUM,
    E_KIND,
    E_LAST,
    E_LIMIT,
    E_PREV,
    E_STATUS,
    E_TS_EVENT,
    E_TS_RECV,
    F_CONTRACT_SIZE,
    F_INVERSE,
    FLAG_CROSSED,
    FLAG_PARSE_ERROR,
    FLAG_TRUNCATED,
    FLAG_WINDOW,
    KEY_MIN,
    KIND_DELTA,
    KIND_SNAPSHOT,
    R_APPLIED,
    R_BUFFER,
    R_CHECKSUM,
    R_CROSSED,
    R_GAP,
    R_OFF_GRID,
    R_PARSE_ERROR,
    R_SNAPSHOT,
    R_STALE,
    R_TOP_UNKNOWN,
    RULE_CHAIN,
    RULE_CONTIGUOUS,
    RULE_NONE,
    S_CAPACITY,
    S_CHECK_FAIL,
    S_CHECK_OK,
    S_CHECKSUM,
    S_COMPLETE_ASK,
    S_COMPLETE_BID,
    S_CROSSED,
    S_DROPPED,
    S_FLAGS,
    S_GAPS,
    S_LAST_ID,
    S_MESSAGES,
    S_N_ASK,
    S_N_BID,
    S_PRICE_DEC,
    S_PX_INDEX,
    S_PX_WIRE_DEC,
    S_QTY_INDEX,
    S_QTY_PREC,
    S_QTY_WIRE_DEC,
    S_RULE,
    S_STALE,
    S_STATE,
    S_TS_EVENT,
    S_TS_RECV,
    STATE_EMPTY,
    STATE_LIVE,
    STATE_SYNCING,
)

# parse_levels error codes
PARSE_OK = 0
PARSE_MALFORMED = -1
PARSE_OFF_GRID = -2
PARSE_TOO_MANY = -3

POW10 = np.array([10**i for i in range(19)], dtype=np.int64)


@njit(cache=True, inline="always")
def _is_space(c: int) -> bool:
    return c == 32 or c == 9 or c == 10 or c == 13


@njit(cache=True)
def _skip_space(buf: np.ndarray, i: int, end: int) -> int:
    while i < end and _is_space(buf[i]):
        i += 1
    return i


@njit(cache=True)
def parse_levels(
    buf: np.ndarray,
    start: int,
    end: int,
    px_index: int,
    qty_index: int,
    price_dec: int,
    contract_size: float,
    out_px: np.ndarray,
    out_qty: np.ndarray,
    wire_dec: np.ndarray,
) -> int:
    """Parse a JSON array of level arrays (``[["0.1","2"],...]``) into price units and qty.

    Numbers may be quoted or bare JSON numbers; other elements of a level (strings such as
    Deribit's "new", order counts) are skipped but must be strings or bare scalars. Prices
    are converted exactly from their decimal digits. Anything that is not such an array
    (a missing bracket or comma, a non-number where a number belongs, trailing bytes) is
    refused. Returns the number of levels, or a negative PARSE_* code. ``wire_dec`` receives
    the largest number of decimals written for price [0] and quantity [1].
    """
    n = 0
    cap = out_px.shape[0]
    i = _skip_space(buf, start, end)
    if i >= end or buf[i] != 91:  # '['
        return PARSE_MALFORMED
    i = _skip_space(buf, i + 1, end)
    if i < end and buf[i] == 93:  # empty array
        i = _skip_space(buf, i + 1, end)
        return 0 if i == end else PARSE_MALFORMED
    while True:
        if i >= end or buf[i] != 91:
            return PARSE_MALFORMED
        i += 1
        pos = 0
        have_px = False
        have_qty = False
        px_units = np.int64(0)
        qty = 0.0
        while True:  # the elements of one level
            i = _skip_space(buf, i, end)
            if i >= end:
                return PARSE_MALFORMED
            c = buf[i]
            quoted = c == 34
            if pos == px_index or pos == qty_index:
                # the usual text, a quoted decimal of at most 15 digits ("113377.0"): one
                # tight loop. Its units, size and decimals are the general way's: that one
                # folds trailing zeros after the dot out of mant, which changes no grid
                # check, no price and (both mantissas below 2**53) no size. Hyperliquid's
                # 40 levels a frame: apply_batch 1.49 -> 1.13 us per event.
                mant = np.int64(0)
                ndigits = 0
                dot = -1  # digits before the dot
                j = i + 1
                while quoted and j < end:
                    d = buf[j]
                    if 48 <= d <= 57:
                        if ndigits == 15:
                            ndigits = 16  # too long: the general way
                            break
                        mant = mant * 10 + (d - 48)
                        ndigits += 1
                    elif d == 46 and dot < 0 and ndigits > 0:
                        dot = ndigits
                    else:
                        break
                    j += 1
                if quoted and 0 < ndigits <= 15 and dot != ndigits and j < end and buf[j] == 34:
                    written = ndigits - dot if dot >= 0 else 0
                    dec = written
                    i = j + 1
                else:
                    if quoted:
                        i += 1
                    mant = np.int64(0)
                    dec = 0  # decimals held in mant
                    written = 0  # decimals written on the wire (trailing zeros included)
                    ndigits = 0
                    sig = 0
                    zeros = 0  # zeros after the dot not yet folded into mant
                    seen_dot = False
                    while i < end:
                        d = buf[i]
                        if 48 <= d <= 57:
                            ndigits += 1
                            if seen_dot:
                                written += 1
                                if d == 48:
                                    zeros += 1
                                    i += 1
                                    continue
                                if sig + zeros + 1 > 18:
                                    return PARSE_MALFORMED
                                mant = mant * POW10[zeros + 1] + (d - 48)
                                dec += zeros + 1
                                sig += zeros + 1
                                zeros = 0
                            else:
                                if mant != 0 or d != 48:
                                    sig += 1
                                    if sig > 18:
                                        return PARSE_MALFORMED
                                mant = mant * 10 + (d - 48)
                            i += 1
                        elif d == 46 and not seen_dot and ndigits > 0:
                            seen_dot = True
                            i += 1
                        else:
                            break
                    if ndigits == 0 or (seen_dot and written == 0):
                        return PARSE_MALFORMED
                    if i < end and (buf[i] == 101 or buf[i] == 69):  # exponent: 1e-05
                        i += 1
                        eneg = False
                        if i < end and (buf[i] == 45 or buf[i] == 43):
                            eneg = buf[i] == 45
                            i += 1
                        ev = 0
                        edig = 0
                        while i < end and 48 <= buf[i] <= 57:
                            ev = ev * 10 + (int(buf[i]) - 48)
                            edig += 1
                            i += 1
                            if ev > 36:
                                return PARSE_MALFORMED
                        if edig == 0:
                            return PARSE_MALFORMED
                        if eneg:
                            dec += ev
                            written += ev
                        elif dec >= ev:
                            dec -= ev
                            written = max(written - ev, 0)
                        else:
                            if sig + ev - dec > 18:
                                return PARSE_MALFORMED
                            mant = mant * POW10[ev - dec]
                            dec = 0
                            written = 0
                        if dec > 18:
                            return PARSE_MALFORMED
                    if quoted:
                        if i >= end or buf[i] != 34:
                            return PARSE_MALFORMED
                        i += 1
                if pos == px_index:
                    wire_dec[0] = max(wire_dec[0], written)
                    if dec > price_dec:
                        div = POW10[dec - price_dec]
                        if mant % div != 0:
                            return PARSE_OFF_GRID
                        px_units = mant // div
                    else:
                        px_units = mant * POW10[price_dec - dec]
                    have_px = True
                else:
                    wire_dec[1] = max(wire_dec[1], written)
                    qty = (mant / POW10[dec]) * contract_size
                    have_qty = True
            elif quoted:
                i += 1
                while i < end and buf[i] != 34:
                    if buf[i] == 92:  # backslash escape
                        i += 1
                    i += 1
                if i >= end:
                    return PARSE_MALFORMED
                i += 1
            else:
                # a bare scalar we do not use: number, true, false, null
                j = i
                while i < end and (
                    (48 <= buf[i] <= 57)
                    or (97 <= buf[i] <= 122)
                    or buf[i] == 46
                    or buf[i] == 45
                    or buf[i] == 43
                ):
                    i += 1
                if i == j:
                    return PARSE_MALFORMED
            pos += 1
            i = _skip_space(buf, i, end)
            if i >= end:
                return PARSE_MALFORMED
            if buf[i] == 44:  # ',': another element follows
                i += 1
                continue
            if buf[i] == 93:  # ']': end of the level
                i += 1
                break
            return PARSE_MALFORMED
        if not (have_px and have_qty):
            return PARSE_MALFORMED
        if n >= cap:
            return PARSE_TOO_MANY
        out_px[n] = px_units
        out_qty[n] = qty
        n += 1
        i = _skip_space(buf, i, end)
        if i >= end:
            return PARSE_MALFORMED
        if buf[i] == 44:
            i = _skip_space(buf, i + 1, end)
            continue
        if buf[i] == 93:
            i = _skip_space(buf, i + 1, end)
            return n if i == end else PARSE_MALFORMED
        return PARSE_MALFORMED


@njit(cache=True)
def _find(keys: np.ndarray, n: int, key: int) -> int:
    """First index in keys[0:n] whose key is >= key (keys ascending)."""
    # Most changes land near the top of the book (the high indices): scan those first,
    # walking memory contiguously, before a binary search over the rest.
    lo = 0
    hi = n
    j = n - 1
    stop = max(n - 16, 0)
    while j >= stop:
        if keys[j] < key:
            return j + 1
        j -= 1
    hi = stop  # keys[stop] >= key (or n == 0): the answer lies in [0, stop]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def set_level(
    keys: np.ndarray,
    qtys: np.ndarray,
    n: int,
    cap: int,
    key: int,
    qty: float,
    state: np.ndarray,
    complete_col: int,
) -> int:
    """Set one level (qty 0 deletes). Returns the new level count.

    When the side is full, the deepest level is dropped (or the new level is not stored
    if it is the deepest), the book is flagged truncated and its completeness bound moves
    up: depth beyond it is unknown, never silently wrong.
    """
    i = _find(keys, n, key)
    if i < n and keys[i] == key:
        if qty > 0.0:
            qtys[i] = qty
            return n
        for j in range(i, n - 1):
            keys[j] = keys[j + 1]
            qtys[j] = qtys[j + 1]
        return n - 1
    if qty <= 0.0:
        return n
    if n < cap:
        for j in range(n, i, -1):
            keys[j] = keys[j - 1]
            qtys[j] = qtys[j - 1]
        keys[i] = key
        qtys[i] = qty
        return n + 1
    # full side
    state[S_FLAGS] |= FLAG_TRUNCATED
    state[S_DROPPED] += 1
    if i == 0:
        state[complete_col] = max(state[complete_col], key + 1)
        return n
    dropped = keys[0]
    state[complete_col] = max(state[complete_col], dropped + 1)
    for j in range(0, i - 1):
        keys[j] = keys[j + 1]
        qtys[j] = qtys[j + 1]
    keys[i - 1] = key
    qtys[i - 1] = qty
    return n


@njit(cache=True)
def _clear(state: np.ndarray) -> None:
    state[S_N_BID] = 0
    state[S_N_ASK] = 0
    state[S_STATE] = STATE_EMPTY
    state[S_COMPLETE_BID] = KEY_MIN
    state[S_COMPLETE_ASK] = KEY_MIN
    state[S_FLAGS] &= ~(FLAG_TRUNCATED | FLAG_CROSSED)


@njit(cache=True, inline="always")
def _deleted_later(px: np.ndarray, qty: np.ndarray, k: int, count: int) -> bool:
    """Whether level ``k``'s price is deleted later in the same message (that wins)."""
    for j in range(k + 1, count):  # noqa: SIM110 (a plain loop: numba compiles it as such)
        if px[j] == px[k] and qty[j] <= 0.0:
            return True
    return False


@njit(cache=True)
def _apply_side(
    keys: np.ndarray,
    qtys: np.ndarray,
    n: int,
    cap: int,
    px: np.ndarray,
    qty: np.ndarray,
    count: int,
    sign: int,
    state: np.ndarray,
    complete_col: int,
    window: bool,
) -> int:
    """Apply one message's levels of one side in order. Returns the new level count.

    A depth-window book (``window``: Bybit, Kraken, OKX) follows the venue, which applies
    the whole message and then truncates its book to the window: a level inserted while
    the side is full must not push out a level that a delete later in the same message
    makes room for. The side holds no more than ``cap`` levels, so the message is applied
    in two passes instead: every delete first, then every insert or update, each level
    taking the last value the message gives its price (an insert followed by a delete of
    the same price is a delete). The deletes only free room; the inserts then drop the
    deepest levels one by one, which keeps the best ``cap`` of the whole result exactly as
    one truncation at the end would (a level dropped is never better than one kept, and
    nothing after it frees room). In place, no allocation; the two passes run only when
    the message has a delete and its inserts could overflow the side.
    """
    if window:
        deletes = 0
        inserts = 0
        for k in range(count):
            if qty[k] > 0.0:
                inserts += 1
            else:
                deletes += 1
        if deletes > 0 and n + inserts > cap:
            for k in range(count):
                if qty[k] <= 0.0:
                    n = set_level(keys, qtys, n, cap, sign * px[k], qty[k], state, complete_col)
            for k in range(count):
                if qty[k] > 0.0 and not _deleted_later(px, qty, k, count):
                    n = set_level(keys, qtys, n, cap, sign * px[k], qty[k], state, complete_col)
            return n
    for k in range(count):
        n = set_level(keys, qtys, n, cap, sign * px[k], qty[k], state, complete_col)
    return n


@njit(cache=True)
def _load_side(
    keys: np.ndarray,
    qtys: np.ndarray,
    cap: int,
    px: np.ndarray,
    qty: np.ndarray,
    count: int,
    sign: int,
    state: np.ndarray,
    complete_col: int,
    window: bool,
) -> int:
    """Load a snapshot side into an empty side. Returns the level count.

    Venues send snapshots best level first, strictly ordered: then the levels are copied
    in reverse (best last) in O(n), keeping the ``cap`` best and dropping the rest exactly
    as ``set_level`` would. Anything else (unordered, repeated prices, zero sizes) takes
    the general path, one ``set_level`` per level.
    """
    ordered = True
    for k in range(1, count):
        if sign * px[k] >= sign * px[k - 1] or qty[k] <= 0.0:
            ordered = False
            break
    if count > 0 and qty[0] <= 0.0:
        ordered = False
    if not ordered:
        return _apply_side(keys, qtys, 0, cap, px, qty, count, sign, state, complete_col, window)
    kept = min(count, cap)
    for k in range(kept):
        keys[kept - 1 - k] = sign * px[k]
        qtys[kept - 1 - k] = qty[k]
    if count > cap:
        state[S_FLAGS] |= FLAG_TRUNCATED
        state[S_DROPPED] += count - cap
        bound = sign * px[cap] + 1  # the best dropped level and everything beyond are unknown
        state[complete_col] = max(state[complete_col], bound)
    return kept


@njit(cache=True)
def _chains(rule: int, state: int, last_id: int, first: int, last: int, prev: int) -> int:
    """Sequence decision for one delta: 1 apply, 0 stale (drop), -1 gap."""
    if rule == RULE_NONE:
        return 1
    if rule == RULE_CHAIN:
        # OKX seqId/prevSeqId, Deribit change_id/prev_change_id: ids may even go down
        # (OKX after maintenance), only the link counts; no ids at all: unchecked
        if prev == -1 and last == -1:
            return 1
        return 1 if prev == last_id else -1
    if state == STATE_SYNCING:
        if rule == RULE_CONTIGUOUS:
            # Binance spot: drop u <= lastUpdateId; the first applied has U <= id+1 <= u
            if last <= last_id:
                return 0
            return 1 if first <= last_id + 1 else -1
        # Binance USD-M: drop u < lastUpdateId; the first applied has U <= id <= u, or
        # follows the snapshot exactly (pu == id: a snapshot taken between two events)
        if last < last_id:
            return 0
        return 1 if first <= last_id or prev == last_id else -1
    # STATE_LIVE (the last branch is RULE_PREVIOUS)
    if rule == RULE_CONTIGUOUS:
        if last <= last_id:
            return 0
        return 1 if first == last_id + 1 else -1
    if last <= last_id:
        return 0
    return 1 if prev == last_id else -1


def _crc_table() -> np.ndarray:
    """CRC-32 (zlib's polynomial) lookup tables for slicing by 8: ``table[0]`` is the
    byte-at-a-time table, ``table[k][b]`` the CRC of byte ``b`` followed by ``k`` zero bytes."""
    table = np.zeros((8, 256), dtype=np.int64)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else c >> 1
        table[0, n] = c
    for k in range(1, 8):
        for n in range(256):
            prev = int(table[k - 1, n])
            table[k, n] = (prev >> 8) ^ int(table[0, prev & 0xFF])
    return table


CRC_TABLE = _crc_table()


@njit(cache=True)
def _crc32(buf: np.ndarray, n: int) -> int:
    """zlib's CRC-32 of ``buf[:n]``, eight bytes a step (slicing by 8: the eight table
    look-ups of a step do not wait on each other), then byte by byte."""
    t = CRC_TABLE
    c = np.int64(0xFFFFFFFF)
    i = 0
    while i + 8 <= n:
        one = c ^ (
            np.int64(buf[i])
            | (np.int64(buf[i + 1]) << 8)
            | (np.int64(buf[i + 2]) << 16)
            | (np.int64(buf[i + 3]) << 24)
        )
        c = (
            t[7, one & 0xFF]
            ^ t[6, (one >> 8) & 0xFF]
            ^ t[5, (one >> 16) & 0xFF]
            ^ t[4, (one >> 24) & 0xFF]
            ^ t[3, buf[i + 4]]
            ^ t[2, buf[i + 5]]
            ^ t[1, buf[i + 6]]
            ^ t[0, buf[i + 7]]
        )
        i += 8
    while i < n:
        c = t[0, (c ^ buf[i]) & 0xFF] ^ (c >> 8)
        i += 1
    return c ^ 0xFFFFFFFF


@njit(cache=True)
def _put_int(buf: np.ndarray, n: int, value: int) -> int:
    """Write the decimal digits of a non-negative int at buf[n:]; returns the new length."""
    if value == 0:
        buf[n] = 48
        return n + 1
    digits = 0
    v = value
    while v > 0:
        digits += 1
        v //= 10
    v = value
    for k in range(digits - 1, -1, -1):
        buf[n + k] = 48 + v % 10
        v //= 10
    return n + digits


U10 = np.uint64(10)


@njit(cache=True)
def _put_decimal(buf: np.ndarray, n: int, units: int, dec: int) -> int:
    """Write units * 10**-dec (units >= 0) as the shortest decimal (no trailing zeros, no
    bare dot); returns the new length. The OKX checksum writes 100 of these per event: the
    digits are written from the right in unsigned arithmetic (no floor-division fix-ups)."""
    if units == 0:
        buf[n] = 48
        return n + 1
    while dec > 0 and units % 10 == 0:
        units //= 10
        dec -= 1
    digits = 1
    while digits < 19 and units >= POW10[digits]:
        digits += 1
    width = max(digits, dec + 1)  # the digits written, a lone 0 before the dot included
    end = n + width + (1 if dec > 0 else 0)
    dot = end - dec - 1 if dec > 0 else -1
    v = np.uint64(units)
    p = end
    for _ in range(width):
        q = v // U10
        digit = v - q * U10
        v = q
        p -= 1
        if p == dot:
            buf[p] = 46
            p -= 1
        buf[p] = np.uint8(digit) + np.uint8(48)
    return end


@njit(cache=True)
def _venue_qty_units(qty: float, px_units: int, pd: int, cs: float, inverse: bool, dec: int) -> int:
    """A stored size (base units) back in the venue's size units, as an integer at ``dec``."""
    venue_qty = qty / cs
    if inverse:
        venue_qty = qty * (px_units / POW10[pd]) / cs
    return np.int64(np.round(venue_qty * POW10[dec]))


@njit(cache=True)
def book_checksum(
    mode: int, st: np.ndarray, fst: np.ndarray, keys: np.ndarray, qtys: np.ndarray, buf: np.ndarray
) -> int:
    """CRC32 (unsigned) of one book's top levels, as the venue computes it.

    OKX: top 25 levels, ``bidPx:bidSz:askPx:askSz:...`` interleaved (a side that runs out
    leaves the other's levels), numbers written shortest. Kraken: top 10 asks low to high,
    then top 10 bids high to low, each price and size written at the pair's precision with
    the dot and leading zeros removed (that is, the integer count of units).
    """
    pd = st[S_PRICE_DEC]
    qd = max(st[S_QTY_WIRE_DEC], st[S_QTY_PREC])
    if mode == CHECK_KRAKEN and st[S_QTY_PREC] > 0:
        qd = st[S_QTY_PREC]
    cs = fst[F_CONTRACT_SIZE]
    inverse = fst[F_INVERSE] != 0.0
    nb = st[S_N_BID]
    na = st[S_N_ASK]
    n = 0
    if mode == CHECK_OKX:
        depth = 25
        for i in range(depth):
            if i < nb:
                px = keys[0, nb - 1 - i]
                if n > 0:
                    buf[n] = 58
                    n += 1
                n = _put_decimal(buf, n, px, pd)
                buf[n] = 58
                n += 1
                q = _venue_qty_units(qtys[0, nb - 1 - i], px, pd, cs, inverse, qd)
                n = _put_decimal(buf, n, q, qd)
            if i < na:
                px = -keys[1, na - 1 - i]
                if n > 0:
                    buf[n] = 58
                    n += 1
                n = _put_decimal(buf, n, px, pd)
                buf[n] = 58
                n += 1
                q = _venue_qty_units(qtys[1, na - 1 - i], px, pd, cs, inverse, qd)
                n = _put_decimal(buf, n, q, qd)
        return _crc32(buf, n)
    # Kraken
    for i in range(min(10, na)):
        px = -keys[1, na - 1 - i]
        n = _put_int(buf, n, px)
        n = _put_int(buf, n, _venue_qty_units(qtys[1, na - 1 - i], px, pd, cs, inverse, qd))
    for i in range(min(10, nb)):
        px = keys[0, nb - 1 - i]
        n = _put_int(buf, n, px)
        n = _put_int(buf, n, _venue_qty_units(qtys[0, nb - 1 - i], px, pd, cs, inverse, qd))
    return _crc32(buf, n)


def scratch_levels(batch_bytes: int) -> int:
    """Levels of scratch :func:`apply_batch` needs for sides of up to ``batch_bytes`` bytes:
    a level takes at least 6 bytes (``["1","1"]`` without the quotes), a safe upper bound."""
    return batch_bytes // 5 + 1


CHECKSUM_TEXT_BYTES = 4096  # checksum input: 50 levels x 2 numbers fit


# without NRT (feeds.scan.njit_without_nrt): the scratch comes from the caller, and the ~12
# helper calls per event (parse_levels, _load_side, set_level, ...) and the views of a
# book's rows no longer count references to the store's arrays atomically. It runs
# without holding the GIL, as the tick's kernels do: a replay's reader thread (which inflates
# and scans the recording ahead) then gets the GIL at once when it needs it, not after
# waiting out the interpreter's 5 ms switch interval each time
@njit_without_nrt_released
def apply_batch(
    buf: np.ndarray,
    meta: np.ndarray,
    starts: np.ndarray,
    count: int,
    istate: np.ndarray,
    fstate: np.ndarray,
    keys: np.ndarray,
    qtys: np.ndarray,
    scratch_px: np.ndarray,
    scratch_qty: np.ndarray,
    wire: np.ndarray,
    text: np.ndarray,
) -> int:
    """Sync and apply ``count`` events (snapshots and deltas) to the store, in order.

    Writes each event's outcome (R_*) and the best bid/ask after it into ``meta``.
    Returns the number of events applied. Events for a book without a valid snapshot
    come back as R_BUFFER; a delta that does not chain throws its book away (R_GAP).
    Scratch, the caller's: ``scratch_px`` (int64) and ``scratch_qty`` (float64) of shape
    (2, levels), ``wire`` (int64, 2), ``text`` (uint8, ``CHECKSUM_TEXT_BYTES``). When the
    batch has a side longer than the scratch holds, nothing is done and minus the levels
    needed (``scratch_levels``) is returned.
    """
    if count == 0:
        return 0
    cap_all = keys.shape[2]
    max_levels = 0
    for e in range(count):
        span = max(meta[e, E_BID_LEN], meta[e, E_ASK_LEN])
        max_levels = max(max_levels, span)
    scratch = max_levels // 5 + 1  # scratch_levels
    if scratch > scratch_px.shape[1]:
        return -scratch
    bpx = scratch_px[0]
    bqty = scratch_qty[0]
    apx = scratch_px[1]
    aqty = scratch_qty[1]
    applied = 0
    for e in range(count):
        # event e's bids are buf[starts[e, 0]:+E_BID_LEN], its asks buf[starts[e, 1]:+E_ASK_LEN]
        bid_start = starts[e, 0]
        bid_end = bid_start + meta[e, E_BID_LEN]
        ask_start = starts[e, 1]
        ask_end = ask_start + meta[e, E_ASK_LEN]
        b = meta[e, E_BOOK]
        st = istate[b]
        kind = meta[e, E_KIND]
        first = meta[e, E_FIRST]
        last = meta[e, E_LAST]
        prev = meta[e, E_PREV]
        status = R_APPLIED
        if kind == KIND_DELTA and st[S_STATE] == STATE_EMPTY:
            status = R_BUFFER
        elif kind == KIND_DELTA:
            decision = _chains(st[S_RULE], st[S_STATE], st[S_LAST_ID], first, last, prev)
            if decision == 0:
                status = R_STALE
                st[S_STALE] += 1
            elif decision < 0:
                status = R_GAP
                st[S_GAPS] += 1
                _clear(st)
        if status == R_APPLIED:
            wire[0] = st[S_PX_WIRE_DEC]
            wire[1] = st[S_QTY_WIRE_DEC]
            pd = st[S_PRICE_DEC]
            cs = fstate[b, F_CONTRACT_SIZE]
            nb = parse_levels(
                buf, bid_start, bid_end, st[S_PX_INDEX], st[S_QTY_INDEX], pd, cs, bpx, bqty, wire
            )
            na = parse_levels(
                buf, ask_start, ask_end, st[S_PX_INDEX], st[S_QTY_INDEX], pd, cs, apx, aqty, wire
            )
            if nb < 0 or na < 0:
                status = (
                    R_OFF_GRID if (nb == PARSE_OFF_GRID or na == PARSE_OFF_GRID) else R_PARSE_ERROR
                )
                st[S_FLAGS] |= FLAG_PARSE_ERROR
                if kind == KIND_DELTA:
                    st[S_GAPS] += 1
                _clear(st)
            else:
                st[S_PX_WIRE_DEC] = wire[0]
                st[S_QTY_WIRE_DEC] = wire[1]
                if fstate[b, F_INVERSE] != 0.0:  # sizes are quote amounts: base = amount / price
                    unit = 1.0 / POW10[pd]
                    for k in range(nb):
                        bqty[k] = bqty[k] / (bpx[k] * unit) if bpx[k] > 0 else 0.0
                    for k in range(na):
                        aqty[k] = aqty[k] / (apx[k] * unit) if apx[k] > 0 else 0.0
                cap = min(st[S_CAPACITY], cap_all)
                window = (st[S_FLAGS] & FLAG_WINDOW) != 0
                if kind == KIND_SNAPSHOT:
                    _clear(st)
                    st[S_FLAGS] &= ~FLAG_PARSE_ERROR
                    limit = meta[e, E_LIMIT]
                if kind == KIND_SNAPSHOT:
                    n_bid = _load_side(
                        keys[b, 0], qtys[b, 0], cap, bpx, bqty, nb, 1, st, S_COMPLETE_BID, window
                    )
                    n_ask = _load_side(
                        keys[b, 1], qtys[b, 1], cap, apx, aqty, na, -1, st, S_COMPLETE_ASK, window
                    )
                else:
                    n_bid = _apply_side(
                        keys[b, 0],
                        qtys[b, 0],
                        st[S_N_BID],
                        cap,
                        bpx,
                        bqty,
                        nb,
                        1,
                        st,
                        S_COMPLETE_BID,
                        window,
                    )
                    n_ask = _apply_side(
                        keys[b, 1],
                        qtys[b, 1],
                        st[S_N_ASK],
                        cap,
                        apx,
                        aqty,
                        na,
                        -1,
                        st,
                        S_COMPLETE_ASK,
                        window,
                    )
                st[S_N_BID] = n_bid
                st[S_N_ASK] = n_ask
                st[S_TS_EVENT] = meta[e, E_TS_EVENT]
                st[S_TS_RECV] = meta[e, E_TS_RECV]
                st[S_MESSAGES] += 1
                if kind == KIND_SNAPSHOT:
                    # a snapshot cut at its requested depth says nothing beyond its deepest level
                    if (
                        limit > 0
                        and nb >= limit
                        and n_bid > 0
                        and keys[b, 0, 0] > st[S_COMPLETE_BID]
                    ):
                        st[S_COMPLETE_BID] = keys[b, 0, 0]
                    if (
                        limit > 0
                        and na >= limit
                        and n_ask > 0
                        and keys[b, 1, 0] > st[S_COMPLETE_ASK]
                    ):
                        st[S_COMPLETE_ASK] = keys[b, 1, 0]
                    st[S_LAST_ID] = last
                    st[S_STATE] = STATE_SYNCING
                    status = R_SNAPSHOT
                else:
                    st[S_LAST_ID] = last
                    st[S_STATE] = STATE_LIVE
                if window:
                    # the venue sends the levels that enter its window: what we hold is the
                    # book down to our deepest level, wherever the price has walked
                    st[S_COMPLETE_BID] = keys[b, 0, 0] if n_bid > 0 else KEY_MIN
                    st[S_COMPLETE_ASK] = keys[b, 1, 0] if n_ask > 0 else KEY_MIN
                crossed = (
                    n_bid > 0 and n_ask > 0 and keys[b, 0, n_bid - 1] >= -keys[b, 1, n_ask - 1]
                )
                # a side known only below some key (capacity cut, or a depth-limited
                # snapshot) whose held levels all lie below it: its real top is unknown
                lost = (
                    st[S_COMPLETE_BID] > KEY_MIN
                    and (n_bid == 0 or keys[b, 0, n_bid - 1] < st[S_COMPLETE_BID])
                ) or (
                    st[S_COMPLETE_ASK] > KEY_MIN
                    and (n_ask == 0 or keys[b, 1, n_ask - 1] < st[S_COMPLETE_ASK])
                )
                if lost and not crossed:
                    if kind == KIND_DELTA:
                        st[S_GAPS] += 1
                    _clear(st)
                    status = R_TOP_UNKNOWN
                elif crossed:
                    st[S_CROSSED] += 1
                    if kind == KIND_DELTA:
                        st[S_GAPS] += 1
                    _clear(st)
                    st[S_FLAGS] |= FLAG_CROSSED
                    status = R_CROSSED
                elif meta[e, E_HAS_CHECKSUM] != 0 and st[S_CHECKSUM] != 0:
                    got = book_checksum(st[S_CHECKSUM], st, fstate[b], keys[b], qtys[b], text)
                    if (got & 0xFFFFFFFF) == (meta[e, E_CHECKSUM] & 0xFFFFFFFF):
                        st[S_CHECK_OK] += 1
                        if kind == KIND_DELTA:
                            applied += 1
                    else:
                        st[S_CHECK_FAIL] += 1
                        _clear(st)
                        status = R_CHECKSUM
                elif kind == KIND_DELTA:
                    applied += 1
        meta[e, E_STATUS] = status
        nbk = st[S_N_BID]
        nak = st[S_N_ASK]
        meta[e, E_BEST_BID] = keys[b, 0, nbk - 1] if nbk > 0 else -1
        meta[e, E_BEST_ASK] = -keys[b, 1, nak - 1] if nak > 0 else -1
    return applied
