"""Property tests: the numba book kernels against their plain-Python twins.

``monitor.book.kernels.parse_levels`` is compared with ``monitor.book.reference.parse_levels``
and ``BookStore.apply`` (``kernels.apply_batch``) with ``ReferenceBook`` on generated input.
No expected value is written by hand: the twin is the oracle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from monitor.book import kernels
from monitor.book.layout import (
    E_BEST_ASK,
    E_BEST_BID,
    E_STATUS,
    FLAG_TRUNCATED,
    KEY_MIN,
    R_APPLIED,
    R_BUFFER,
    R_CROSSED,
    R_GAP,
    R_OFF_GRID,
    R_PARSE_ERROR,
    R_SNAPSHOT,
    R_STALE,
    R_TOP_UNKNOWN,
    S_COMPLETE_ASK,
    S_COMPLETE_BID,
    S_DROPPED,
    S_FLAGS,
    S_N_ASK,
    S_N_BID,
)
from monitor.book.reference import ReferenceBook
from monitor.book.store import BookStore, EventBatch
from monitor.domain import BookState, EventKind, LevelError, SeqRule, format_units
from monitor.domain import parse_levels as ref_parse_levels

# outcome codes of the kernel -> outcome strings of the reference. The reference has no
# separate off-grid outcome: a price finer than the tick is one more LevelError there.
OUTCOME = {
    R_SNAPSHOT: "snapshot",
    R_APPLIED: "applied",
    R_STALE: "stale",
    R_BUFFER: "buffer",
    R_GAP: "gap",
    R_CROSSED: "crossed",
    R_TOP_UNKNOWN: "top_unknown",
    R_PARSE_ERROR: "parse_error",
    R_OFF_GRID: "parse_error",
}

CONTRACT_SIZES = st.sampled_from([1.0, 1.0, 0.01, 0.1, 10.0, 100.0])


# =========================================================================================
# parse_levels
# =========================================================================================


def kernel_parse(
    text: str | bytes,
    px_index: int,
    qty_index: int,
    price_decimals: int,
    contract_size: float = 1.0,
) -> tuple[int, list[int], list[float]]:
    raw = text.encode() if isinstance(text, str) else text
    buf = np.frombuffer(raw, dtype=np.uint8)
    cap = len(raw) // 3 + 2
    px = np.zeros(cap, dtype=np.int64)
    qty = np.zeros(cap, dtype=np.float64)
    wire = np.zeros(2, dtype=np.int64)
    n = kernels.parse_levels(
        buf, 0, len(raw), px_index, qty_index, price_decimals, contract_size, px, qty, wire
    )
    k = max(int(n), 0)
    return int(n), px[:k].tolist(), qty[:k].tolist()


def significant_decimals(text: str) -> int:
    exp = Decimal(text).normalize().as_tuple().exponent
    assert isinstance(exp, int)
    return max(0, -exp)


@dataclass(frozen=True)
class Number:
    text: str
    quoted: bool


@st.composite
def plain_decimals(draw: st.DrawFn, max_int_digits: int = 6) -> str:
    """A decimal string with 0..8 decimals, valid as a bare JSON number too."""
    whole = draw(st.integers(0, 10**max_int_digits - 1))
    dec = draw(st.integers(0, 8))
    if dec == 0:
        return str(whole)
    frac = draw(st.integers(0, 10**dec - 1))
    return f"{whole}.{frac:0{dec}d}"


@st.composite
def exponent_numbers(draw: st.DrawFn) -> str:
    """``1e-05``, ``2.5E+2``, ``15e3``: how some venues write small or round numbers."""
    whole = draw(st.integers(0, 9999))
    fdec = draw(st.integers(0, 3))
    mant = str(whole) if fdec == 0 else f"{whole}.{draw(st.integers(0, 10**fdec - 1)):0{fdec}d}"
    sign = draw(st.sampled_from(["", "-", "-", "+"]))
    ev = draw(st.integers(0, 3 if sign != "-" else 8))
    digits = draw(st.sampled_from(["", "0"])) + str(ev)
    return f"{mant}{draw(st.sampled_from('eE'))}{sign}{digits}"


@st.composite
def numbers(draw: st.DrawFn, exponents: bool = True) -> Number:
    quoted = draw(st.booleans())
    text = (
        draw(exponent_numbers())
        if exponents and draw(st.integers(0, 5)) == 0
        else draw(plain_decimals())
    )
    return Number(text, quoted)


EXTRA_STRINGS = st.text(alphabet='0123456789abcnew,[]"\\ ', max_size=6)
EXTRA_BARE = st.sampled_from(["0", "3", "17", "true", "false", "null", "-1", "2.5"])
WHITESPACE = st.sampled_from(["", "", "", " ", "  ", "\n", "\t", "\r\n  "])


@dataclass
class LevelArray:
    """A rendered level array and where its parts sit in the text."""

    text: str
    px_index: int
    qty_index: int
    prices: list[str]
    numbers: list[tuple[int, int, bool]] = field(default_factory=list)  # (start, end, quoted)
    brackets: list[int] = field(default_factory=list)  # structural '[' and ']' positions


@st.composite
def level_arrays(
    draw: st.DrawFn, min_levels: int = 0, max_levels: int = 8, exponents: bool = True
) -> LevelArray:
    """``[["px","qty"],...]`` with quoted and bare numbers, whitespace anywhere between
    tokens and extra elements per level (OKX ``["px","sz","0","3"]``, ``["new",px,qty]``).
    """
    n_extra = draw(st.sampled_from([0, 0, 0, 1, 2, 2, 3]))
    n_elems = 2 + n_extra
    px_index, qty_index = draw(st.permutations(range(n_elems)))[:2]
    levels = draw(
        st.lists(
            st.tuples(numbers(exponents), numbers(exponents)),
            min_size=min_levels,
            max_size=max_levels,
        )
    )
    spaces = draw(st.lists(WHITESPACE, min_size=1, max_size=8))
    space_iter = iter(spaces * 10_000)

    out: list[str] = []
    pos = 0
    arr = LevelArray("", px_index, qty_index, [p.text for p, _ in levels])

    def put(piece: str) -> None:
        nonlocal pos
        out.append(piece)
        pos += len(piece)

    def bracket(ch: str) -> None:
        arr.brackets.append(pos)
        put(ch)

    def number(num: Number) -> None:
        if num.quoted:
            put('"')
        arr.numbers.append((pos, pos + len(num.text), num.quoted))
        put(num.text)
        if num.quoted:
            put('"')

    put(next(space_iter))
    bracket("[")
    for li, (px, qty) in enumerate(levels):
        if li:
            put(next(space_iter) + "," + next(space_iter))
        bracket("[")
        for e in range(n_elems):
            if e:
                put(next(space_iter) + "," + next(space_iter))
            if e == px_index:
                number(px)
            elif e == qty_index:
                number(qty)
            elif draw(st.booleans()):
                put(json.dumps(draw(EXTRA_STRINGS)))
            else:
                put(draw(EXTRA_BARE))
        put(next(space_iter))
        bracket("]")
    put(next(space_iter))
    bracket("]")  # nothing after the closing bracket: every proper prefix is then invalid
    arr.text = "".join(out)
    return arr


def needed_decimals(arr: LevelArray) -> int:
    return max((significant_decimals(p) for p in arr.prices), default=0)


def parse_with_wire(text: str, price_decimals: int, contract_size: float) -> tuple[Any, ...]:
    raw = text.encode()
    px = np.zeros(4, dtype=np.int64)
    qty = np.zeros(4, dtype=np.float64)
    wire = np.zeros(2, dtype=np.int64)
    n = kernels.parse_levels(
        np.frombuffer(raw, dtype=np.uint8), 0, len(raw), 0, 1, price_decimals, contract_size,
        px, qty, wire,
    )  # fmt: skip
    return int(n), px[: max(int(n), 0)].tolist(), qty[: max(int(n), 0)].tolist(), wire.tolist()


@settings(max_examples=500, deadline=None)
@given(
    digits=st.text(alphabet="0123456789", min_size=1, max_size=18),
    dot=st.integers(0, 18),
    price_decimals=st.integers(0, 12),
    contract_size=CONTRACT_SIZES,
)
def test_quoted_decimals_read_the_same_as_bare_ones(
    digits: str, dot: int, price_decimals: int, contract_size: float
) -> None:
    """A quoted decimal of up to 15 digits takes the short way, a bare one (and a longer
    one) the general way: the same units, size, decimals written and outcome, with
    leading and trailing zeros, on and off the grid, on both sides of the 15 digits."""
    text = digits if not 0 < dot < len(digits) else f"{digits[:dot]}.{digits[dot:]}"
    value = Decimal(text) * 10**price_decimals
    assume(value < 2**62)
    quoted = parse_with_wire(f'[["{text}","{text}"]]', price_decimals, contract_size)
    bare = parse_with_wire(f"[[{text},{text}]]", price_decimals, contract_size)
    assert quoted == bare
    if value == int(value):
        assert quoted[1] == [int(value)]
    else:
        assert quoted[0] == kernels.PARSE_OFF_GRID


@settings(max_examples=300, deadline=None)
@given(arr=level_arrays(), extra=st.integers(0, 3), contract_size=CONTRACT_SIZES)
def test_parse_levels_equals_reference_exactly_when_prices_fit_the_grid(
    arr: LevelArray, extra: int, contract_size: float
) -> None:
    pd = needed_decimals(arr) + extra
    ref = ref_parse_levels(
        arr.text,
        px_index=arr.px_index,
        qty_index=arr.qty_index,
        price_decimals=pd,
        contract_size=contract_size,
    )
    assume(all(units < 2**62 for units, _ in ref))
    n, px, qty = kernel_parse(arr.text, arr.px_index, arr.qty_index, pd, contract_size)
    assert n == len(ref)
    assert px == [units for units, _ in ref]
    assert qty == [q for _, q in ref]


@settings(max_examples=200, deadline=None)
@given(arr=level_arrays(min_levels=1), data=st.data())
def test_parse_levels_reports_a_price_finer_than_the_grid_as_off_grid(
    arr: LevelArray, data: st.DataObject
) -> None:
    needed = needed_decimals(arr)
    assume(needed >= 1)
    pd = data.draw(st.integers(0, needed - 1), label="price_decimals")
    with pytest.raises(LevelError) as err:
        ref_parse_levels(
            arr.text, px_index=arr.px_index, qty_index=arr.qty_index, price_decimals=pd
        )
    assert err.value.off_grid
    n, _, _ = kernel_parse(arr.text, arr.px_index, arr.qty_index, pd)
    assert n == kernels.PARSE_OFF_GRID


def assert_both_reject(text: str, px_index: int, qty_index: int, price_decimals: int) -> None:
    with pytest.raises(LevelError):
        ref_parse_levels(
            text, px_index=px_index, qty_index=qty_index, price_decimals=price_decimals
        )
    n, px, qty = kernel_parse(text, px_index, qty_index, price_decimals)
    assert n < 0, f"kernel accepted {text!r} as {list(zip(px, qty, strict=True))}"


@settings(max_examples=200, deadline=None)
@given(arr=level_arrays(), data=st.data())
def test_parse_levels_rejects_truncated_text_like_the_reference(
    arr: LevelArray, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(arr.text) - 1), label="cut")
    assert_both_reject(arr.text[:cut], arr.px_index, arr.qty_index, needed_decimals(arr))


@settings(max_examples=300, deadline=None)
@given(arr=level_arrays(min_levels=1, max_levels=3), data=st.data())
def test_parse_levels_rejects_a_missing_bracket_like_the_reference(
    arr: LevelArray, data: st.DataObject
) -> None:
    drop = data.draw(st.sampled_from(arr.brackets), label="dropped bracket")
    text = arr.text[:drop] + arr.text[drop + 1 :]
    assert_both_reject(text, arr.px_index, arr.qty_index, needed_decimals(arr))


@settings(max_examples=300, deadline=None)
@given(arr=level_arrays(min_levels=1, max_levels=3), data=st.data())
def test_parse_levels_rejects_letters_in_a_number_like_the_reference(
    arr: LevelArray, data: st.DataObject
) -> None:
    start, end, _quoted = data.draw(st.sampled_from(arr.numbers), label="number")
    at = data.draw(st.integers(start, end), label="at")
    letter = data.draw(st.sampled_from("xqzkXQ"), label="letter")
    replace = at < end and data.draw(st.booleans(), label="replace")
    text = arr.text[:at] + letter + arr.text[at + (1 if replace else 0) :]
    assert_both_reject(text, arr.px_index, arr.qty_index, needed_decimals(arr))


@pytest.mark.parametrize(
    "text",
    [
        '[["1","2"]',  # outer array not closed
        '[["1","2"],["3","4"]',
        '[["1","2"],["3","4x"]]',  # a letter in a quoted number (the kernel rejects it)
        '[["1","2",["3","4"]]',  # first level not closed
        "[[1,2x]]",  # a letter after a bare number
        "[[1x,2]]",
        '[["1",x]]',  # a bare token where the quantity should be
        '[["1",null]]',
        '[[true,"2"]]',
        '[["","2"]]',  # an empty string is no number
    ],
)
def test_parse_levels_rejects_what_the_reference_rejects_on_known_malformed_arrays(
    text: str,
) -> None:
    assert_both_reject(text, 0, 1, 2)


# =========================================================================================
# BookStore.apply vs ReferenceBook
# =========================================================================================


@dataclass(frozen=True)
class Event:
    kind: int
    first: int
    last: int
    prev: int
    bids: bytes
    asks: bytes
    limit: int = 0


@dataclass(frozen=True)
class Plan:
    """What one event of a stream is; ``bits`` pick the details (all-zero bits shrink to
    the plainest choice), ``bid_bytes``/``ask_bytes`` encode levels three bytes each.
    """

    action: str
    bits: int
    bid_bytes: bytes
    ask_bytes: bytes

    def field(self, shift: int, size: int) -> int:
        return (self.bits >> shift) & ((1 << size) - 1)


NORMAL_ACTIONS = ("delta",) * 30 + ("snapshot",) * 5
FAULT_ACTIONS = (
    "gap",
    "stale",
    "stale",
    "crossed",
    "crossed",
    "garbled",
    "off_grid",
    "bad_snapshot",
    "crossed_snapshot",
)


def plans(faults: bool = True, crossed: bool = True) -> st.SearchStrategy[Plan]:
    actions = list(NORMAL_ACTIONS)
    if faults:
        actions += [a for a in FAULT_ACTIONS if crossed or not a.startswith("crossed")]
    return st.builds(
        Plan,
        st.sampled_from(actions),
        st.integers(0, 2**48 - 1),
        st.binary(max_size=3 * 40),
        st.binary(max_size=3 * 40),
    )


# lastUpdateId of a snapshot relative to the last delta id sent: mostly one the next
# delta bridges (CONTIGUOUS: U <= id+1 <= u, PREVIOUS: U <= id <= u), sometimes one that
# leaves a few stale deltas first, sometimes one that is already behind the stream
SNAPSHOT_ID_OFFSETS = {
    SeqRule.CONTIGUOUS: (0, 0, 1, 2, 4, -1, 0, -3),
    SeqRule.PREVIOUS: (1, 1, 2, 3, 5, 0, 1, -2),
    SeqRule.CHAIN: (0, 0, 0, 0, 1, -1, 0, 2),  # the next delta's prev must equal the id
    SeqRule.NONE: (0, 0, 1, 5, -4, -1, 0, 3),  # ids mean nothing
}


class EventStream:
    """One book's traffic: a venue delta stream with correct U/u/pu chaining, snapshots
    taken somewhere along it, and (as the plans say) a forged gap, a stale duplicate, a
    crossed level, a truncated level array or an off-grid price now and then.
    """

    def __init__(
        self,
        rule: SeqRule,
        pd: int,
        mid: int,
        width: int,
        stream_id: int,
        delta_levels: int = 6,
    ) -> None:
        self.rule = rule
        self.pd = pd
        self.mid = mid
        self.width = width
        self.u = stream_id
        self.delta_levels = delta_levels  # most levels a delta sends per side
        self.sent: list[Event] = []

    # --- rendering ------------------------------------------------------------------------
    def _px(self, units: int, quoted: bool, zeros: int) -> str:
        text = format_units(units, self.pd)
        if zeros:
            text += ("0" * zeros) if self.pd else "." + "0" * zeros
        return f'"{text}"' if quoted else text

    def _side(self, levels: list[tuple[int, int]], plan: Plan, which: int) -> bytes:
        quoted = bool(plan.field(2 + which, 1))
        zeros = plan.field(4, 2) % 3
        qdec = plan.field(6, 4) % 9
        sep = " " * plan.field(10, 1)
        parts = []
        for px, q in levels:
            qty = format_units(q, qdec)
            if quoted:
                qty = f'"{qty}"'
            parts.append(f"[{self._px(px, quoted, zeros)},{sep}{qty}]")
        return ("[" + ("," + sep).join(parts) + "]").encode()

    def _levels(
        self, raw: bytes, max_levels: int, far: int, deletes: bool, sign: int
    ) -> list[tuple[int, int]]:
        out = []
        for i in range(0, min(len(raw), 3 * max_levels) - 2, 3):
            offset = 1 + raw[i] % far
            q = (raw[i + 1] << 8) | raw[i + 2]
            if not deletes:
                q += 1
            elif q < 2**14:
                q = 0  # about one level in four deletes
            px = self.mid + sign * offset
            if px > 0:
                out.append((px, q))
        return out

    # --- events ---------------------------------------------------------------------------
    def _delta(self, plan: Plan, bids: bytes, asks: bytes) -> Event:
        k = plan.field(0, 2)
        first, last, prev = self.u + 1, self.u + 1 + k, self.u
        self.u = last
        ev = Event(int(EventKind.DELTA), first, last, prev, bids, asks)
        self.sent.append(ev)
        return ev

    def _cut(self, raw: bytes, plan: Plan) -> bytes:
        return raw[: plan.field(11, 8) % len(raw)]

    def event(self, plan: Plan) -> Event:
        action = plan.action
        if action in ("snapshot", "bad_snapshot", "crossed_snapshot"):
            b = self._levels(plan.bid_bytes, 40, 2 * self.width, False, -1)
            a = self._levels(plan.ask_bytes, 40, 2 * self.width, False, +1)
            if action == "crossed_snapshot":
                b.append((self.mid + plan.field(20, 5) % (self.width + 1), 7))
            bids, asks = self._side(b, plan, 0), self._side(a, plan, 1)
            if action == "bad_snapshot":
                bids = self._cut(bids, plan)
            off = SNAPSHOT_ID_OFFSETS[self.rule][plan.field(33, 3)]
            limit = (0, 0, max(1, min(len(b), len(a))), 1 + plan.field(40, 5))[plan.field(36, 2)]
            return Event(int(EventKind.SNAPSHOT), -1, self.u + off, -1, bids, asks, limit)
        if action == "stale" and self.sent:
            return self.sent[-1 - plan.field(38, 2) % min(len(self.sent), 4)]
        if action == "gap":
            self.u += 1 + plan.field(26, 3) % 5
        b = self._levels(plan.bid_bytes, self.delta_levels, self.width, True, -1)
        a = self._levels(plan.ask_bytes, self.delta_levels, self.width, True, +1)
        if action == "crossed":
            # a bid at or through the asks, or an ask at or through the bids
            through = plan.field(19, 1) == 0  # past every level of the other side
            depth = self.width + 1 if through else plan.field(20, 5) % (self.width + 1)
            if plan.field(25, 1):
                b.append((self.mid + depth, 7))
            else:
                a.append((max(1, self.mid - depth), 7))
        bids, asks = self._side(b, plan, 0), self._side(a, plan, 1)
        if action == "garbled":
            bids = self._cut(bids, plan)
        if action == "off_grid":
            finer = format_units(self.mid * 10 - 1 - plan.field(29, 4) % 9, self.pd + 1)
            bids = bids[:-1] + (b"," if len(bids) > 2 else b"") + f'["{finer}","1"]]'.encode()
        return self._delta(plan, bids, asks)

    def events(self, stream_plans: list[Plan]) -> list[Event]:
        return [self.event(p) for p in stream_plans]


@st.composite
def streams(draw: st.DrawFn, rule: SeqRule, pd: int, delta_levels: int = 6) -> EventStream:
    mid, width, stream_id = draw(
        st.tuples(st.integers(50, 100_000), st.integers(1, 40), st.integers(0, 10**9))
    )
    return EventStream(rule, pd, mid, width, stream_id, delta_levels)


def ref_apply(ref: ReferenceBook, ev: Event) -> str:
    if ev.kind == EventKind.SNAPSHOT:
        return ref.snapshot(ev.last, ev.bids, ev.asks, ev.limit)
    return ref.delta(ev.first, ev.last, ev.prev, ev.bids, ev.asks)


def add(batch: EventBatch, book: int, ev: Event, ts: int) -> int:
    return batch.add(book, ev.kind, ev.first, ev.last, ev.prev, ev.bids, ev.asks, ts, ts, ev.limit)


def assert_same_book(store: BookStore, book: int, ref: ReferenceBook) -> None:
    lv = store.levels(book)
    bids, asks = ref.top()
    assert lv.bid_px.tolist() == [p for p, _ in bids]
    assert lv.bid_qty.tolist() == [q for _, q in bids]
    assert lv.ask_px.tolist() == [p for p, _ in asks]
    assert lv.ask_qty.tolist() == [q for _, q in asks]
    assert store.state(book) == ref.state
    if ref.state != BookState.EMPTY:
        assert bool(store.istate[book, S_FLAGS] & FLAG_TRUNCATED) == ref.truncated


def ref_best(ref: ReferenceBook) -> tuple[int, int]:
    return (max(ref.bids) if ref.bids else -1, min(ref.asks) if ref.asks else -1)


@dataclass
class Setup:
    rule: SeqRule
    pd: int
    capacity: int
    contract_size: float
    window: bool = False

    def add_to(self, store: BookStore) -> tuple[int, ReferenceBook]:
        book = store.add_book(
            rule=self.rule,
            price_decimals=self.pd,
            contract_size=self.contract_size,
            capacity=self.capacity,
            window=self.window,
        )
        ref = ReferenceBook(
            self.rule,
            self.pd,
            min(self.capacity, store.capacity),
            self.contract_size,
            window=self.window,
        )
        return book, ref


@st.composite
def setups(draw: st.DrawFn, window: bool = False) -> Setup:
    return Setup(
        rule=draw(
            st.sampled_from([SeqRule.CONTIGUOUS, SeqRule.PREVIOUS, SeqRule.CHAIN, SeqRule.NONE])
        ),
        pd=draw(st.integers(0, 8)),
        capacity=draw(st.integers(1, 30)),
        contract_size=draw(CONTRACT_SIZES),
        window=window,
    )


@dataclass
class Case:
    setup: Setup
    stream: EventStream
    plans: list[Plan]

    def events(self) -> list[Event]:
        return self.stream.events(self.plans)


@st.composite
def cases(
    draw: st.DrawFn,
    max_events: int = 40,
    faults: bool = True,
    crossed: bool = True,
    window: bool = False,
) -> Case:
    setup = draw(setups(window))
    # a window book's deltas may bring more levels than a side has room for
    stream = draw(streams(setup.rule, setup.pd, 40 if window else 6))
    n = draw(st.integers(1, max_events))
    ps = draw(st.lists(plans(faults, crossed), min_size=n, max_size=n))
    if draw(st.booleans()):  # most streams start with a snapshot, some with buffered deltas
        ps[0] = Plan("snapshot", ps[0].bits, ps[0].bid_bytes, ps[0].ask_bytes)
    return Case(setup, stream, ps)


BOOK_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@BOOK_SETTINGS
@given(case=cases())
def test_store_matches_reference_outcome_and_levels_after_every_event(case: Case) -> None:
    store = BookStore(max_books=1, capacity=30)
    book, ref = case.setup.add_to(store)
    batch = EventBatch(capacity=1)
    for i, ev in enumerate(case.events()):
        batch.clear()
        add(batch, book, ev, i)
        store.apply(batch)
        expected = ref_apply(ref, ev)
        assert OUTCOME[int(batch.meta[0, E_STATUS])] == expected, f"event {i}: {ev}"
        assert_same_book(store, book, ref)
        assert (int(batch.meta[0, E_BEST_BID]), int(batch.meta[0, E_BEST_ASK])) == ref_best(ref)


@BOOK_SETTINGS
@given(case=cases())
def test_store_matches_reference_when_the_whole_sequence_is_one_batch(case: Case) -> None:
    store = BookStore(max_books=1, capacity=30)
    book, ref = case.setup.add_to(store)
    events = case.events()
    batch = EventBatch(capacity=len(events))
    for i, ev in enumerate(events):
        add(batch, book, ev, i)
    store.apply(batch)
    for i, ev in enumerate(events):
        assert OUTCOME[int(batch.meta[i, E_STATUS])] == ref_apply(ref, ev), f"event {i}: {ev}"
        assert (int(batch.meta[i, E_BEST_BID]), int(batch.meta[i, E_BEST_ASK])) == ref_best(ref)
    assert_same_book(store, book, ref)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(max_events=12))
def test_apply_returns_the_number_of_events_that_came_back_applied(case: Case) -> None:
    """``apply_batch`` documents its return value as the number of events applied; a delta
    whose outcome is R_CROSSED (its book thrown away) is not one of them.
    """
    store = BookStore(max_books=1, capacity=30)
    book, _ = case.setup.add_to(store)
    events = case.events()
    batch = EventBatch(capacity=len(events))
    for i, ev in enumerate(events):
        add(batch, book, ev, i)
    applied = store.apply(batch)
    assert applied == int(np.count_nonzero(batch.meta[: len(events), E_STATUS] == R_APPLIED))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books=st.lists(cases(max_events=25), min_size=2, max_size=4), data=st.data())
def test_interleaved_books_in_one_batch_match_their_own_reference(
    books: list[Case], data: st.DataObject
) -> None:
    """Events of book A never touch book B: every book matches a reference fed its own events."""
    store = BookStore(max_books=len(books), capacity=30)
    added = [c.setup.add_to(store) for c in books]
    queues = [c.events() for c in books]
    # a random merge that keeps each book's own order
    tags = [k for k, q in enumerate(queues) for _ in q]
    order = data.draw(st.permutations(tags), label="interleaving")
    batch = EventBatch(capacity=len(order))
    rows = []
    cursor = [0] * len(books)
    for i, k in enumerate(order):
        ev = queues[k][cursor[k]]
        cursor[k] += 1
        add(batch, added[k][0], ev, i)
        rows.append((k, ev))
    store.apply(batch)
    for i, (k, ev) in enumerate(rows):
        ref = added[k][1]
        assert OUTCOME[int(batch.meta[i, E_STATUS])] == ref_apply(ref, ev), (
            f"event {i} of book {k}: {ev}"
        )
        assert (int(batch.meta[i, E_BEST_BID]), int(batch.meta[i, E_BEST_ASK])) == ref_best(ref)
    for book, ref in added:
        assert_same_book(store, book, ref)


# --- capacity -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 30),
    pd=st.integers(0, 8),
    bid_units=st.sets(st.integers(1, 999), max_size=60),
    ask_units=st.sets(st.integers(1001, 2000), max_size=60),
    data=st.data(),
)
def test_a_full_side_keeps_the_best_levels_drops_the_deepest_and_flags_truncation(
    capacity: int, pd: int, bid_units: set[int], ask_units: set[int], data: st.DataObject
) -> None:
    bids = data.draw(st.permutations(sorted(bid_units)), label="bid order")
    asks = data.draw(st.permutations(sorted(ask_units)), label="ask order")

    def side(units: list[int]) -> bytes:
        return json.dumps([[format_units(u, pd), "1.5"] for u in units]).encode()

    store = BookStore(max_books=1, capacity=30)
    book = store.add_book(rule=SeqRule.CONTIGUOUS, price_decimals=pd, capacity=capacity)
    ref = ReferenceBook(SeqRule.CONTIGUOUS, pd, capacity)
    batch = EventBatch(capacity=1)
    add(batch, book, Event(int(EventKind.SNAPSHOT), -1, 10, -1, side(bids), side(asks)), 0)
    store.apply(batch)
    assert (
        OUTCOME[int(batch.meta[0, E_STATUS])]
        == ref.snapshot(10, side(bids), side(asks))
        == "snapshot"
    )

    lv = store.levels(book)
    best_bids = sorted(bid_units, reverse=True)
    best_asks = sorted(ask_units)
    assert lv.bid_px.tolist() == best_bids[:capacity]
    assert lv.ask_px.tolist() == best_asks[:capacity]
    assert_same_book(store, book, ref)
    overflow = len(bid_units) > capacity or len(ask_units) > capacity
    assert bool(store.istate[book, S_FLAGS] & FLAG_TRUNCATED) == overflow == ref.truncated
    st_ = store.istate[book]
    assert st_[S_DROPPED] == max(0, len(bid_units) - capacity) + max(0, len(ask_units) - capacity)
    # the completeness bound sits just above the best level that was dropped
    if len(bid_units) > capacity:
        assert st_[S_COMPLETE_BID] == best_bids[capacity] + 1
    else:
        assert st_[S_COMPLETE_BID] == KEY_MIN
    if len(ask_units) > capacity:
        assert st_[S_COMPLETE_ASK] == -best_asks[capacity] + 1
    else:
        assert st_[S_COMPLETE_ASK] == KEY_MIN


@BOOK_SETTINGS
@given(case=cases(crossed=False))
def test_levels_at_or_above_the_completeness_bound_equal_the_unbounded_book(case: Case) -> None:
    """A capacity cut makes depth beyond the bound unknown, never wrong: every level the
    bounded store holds at or above its bound is the unbounded book's, and none is missing.
    (No crossing levels: whether a book is crossed can depend on levels a cut dropped.)
    """
    setup = case.setup
    store = BookStore(max_books=1, capacity=30)
    book, ref = setup.add_to(store)
    full = ReferenceBook(setup.rule, setup.pd, 10**9, setup.contract_size)
    batch = EventBatch(capacity=1)
    for i, ev in enumerate(case.events()):
        batch.clear()
        add(batch, book, ev, i)
        store.apply(batch)
        outcome = OUTCOME[int(batch.meta[0, E_STATUS])]
        assert outcome == ref_apply(ref, ev)
        if outcome == "top_unknown":
            # every known level of a side was deleted: the cut book's top is unknown, so it
            # is thrown away for a resync where the unbounded book carries on
            return
        assert outcome == ref_apply(full, ev)
        assert_same_book(store, book, ref)
        lv = store.levels(book)
        bound_bid = int(store.istate[book, S_COMPLETE_BID])
        bound_ask = -int(store.istate[book, S_COMPLETE_ASK])  # asks known for price <= this
        held_b = {int(p): q for p, q in zip(lv.bid_px, lv.bid_qty, strict=True) if p >= bound_bid}
        held_a = {int(p): q for p, q in zip(lv.ask_px, lv.ask_qty, strict=True) if p <= bound_ask}
        assert held_b == {p: q for p, q in full.bids.items() if p >= bound_bid}
        assert held_a == {p: q for p, q in full.asks.items() if p <= bound_ask}
        assert int(store.istate[book, S_N_BID]) <= setup.capacity
        assert int(store.istate[book, S_N_ASK]) <= setup.capacity


# --- depth-window books (Bybit, Kraken, OKX) ----------------------------------------------


@BOOK_SETTINGS
@given(case=cases(window=True))
def test_window_book_matches_reference_that_applies_the_whole_message_then_truncates(
    case: Case,
) -> None:
    """The venue applies a message whole and then cuts its book to the window: a level a
    message inserts must not push out one that a delete in the same message makes room
    for. The twin does exactly that; the kernel must agree after every event."""
    store = BookStore(max_books=1, capacity=30)
    book, ref = case.setup.add_to(store)
    batch = EventBatch(capacity=1)
    for i, ev in enumerate(case.events()):
        batch.clear()
        add(batch, book, ev, i)
        store.apply(batch)
        expected = ref_apply(ref, ev)
        assert OUTCOME[int(batch.meta[0, E_STATUS])] == expected, f"event {i}: {ev}"
        assert_same_book(store, book, ref)
        assert (int(batch.meta[0, E_BEST_BID]), int(batch.meta[0, E_BEST_ASK])) == ref_best(ref)
        assert int(store.istate[book, S_N_BID]) <= case.setup.capacity
        assert int(store.istate[book, S_N_ASK]) <= case.setup.capacity


@BOOK_SETTINGS
@given(books=st.lists(cases(max_events=25, window=True), min_size=1, max_size=3), data=st.data())
def test_window_books_in_one_batch_match_their_own_reference(
    books: list[Case], data: st.DataObject
) -> None:
    store = BookStore(max_books=len(books), capacity=30)
    added = [c.setup.add_to(store) for c in books]
    queues = [c.events() for c in books]
    tags = [k for k, q in enumerate(queues) for _ in q]
    order = data.draw(st.permutations(tags), label="interleaving")
    batch = EventBatch(capacity=len(order))
    rows = []
    cursor = [0] * len(books)
    for i, k in enumerate(order):
        ev = queues[k][cursor[k]]
        cursor[k] += 1
        add(batch, added[k][0], ev, i)
        rows.append((k, ev))
    store.apply(batch)
    for i, (k, ev) in enumerate(rows):
        ref = added[k][1]
        assert OUTCOME[int(batch.meta[i, E_STATUS])] == ref_apply(ref, ev), f"event {i}: {ev}"
        assert (int(batch.meta[i, E_BEST_BID]), int(batch.meta[i, E_BEST_ASK])) == ref_best(ref)
    for book, ref in added:
        assert_same_book(store, book, ref)
