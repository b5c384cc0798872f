"""Order books of one scenario book, a chunk of steps at a time, vectorised with numpy.

Shape (reference spec, "Book shape"): one-side cumulative USD depth
``C(d) = C1·(d/100 bp)^gamma`` to 2 %, then exponent 0.4 out to 10 %; a market-maker ladder of
10 levels from the touch, spaced a quarter of the base spread (at least one tick), then a
geometric grid (5 bp, or two ticks where the tick is coarser) to 10 % of the mid: about
200-300 levels a side. Each level's size is dC over its width times LN(0, 0.5).

Dynamics: the book is a matrix (steps x absolute price levels). A level keeps its size until
it is *touched* (cancelled and re-added at a fresh size drawn from the current profile); the
touch rate is 0.02/s (the spec's cancel/re-add rate) times the phase's cancel multiplier, and
a level that enters the book (the mid moved, the 10 % window moved) is drawn at once. This
is the spec's log-OU size noise made piecewise constant: the book only changes where a real
book's diff would change. Stress thins the bands inside-out (``m^eta``, eta = 1.3/1.1/1.0/0.8/0.4
at 0.1/0.5/1/2/≥5 %; asks as ``m^0.7``). Diffs are the cells that differ from the previous
step, per side (a level that moves from bid to ask is deleted on one side and set on the
other in the same update).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from feeds.sim.scenario.model import BookPath, rng_for
from monitor.domain import Instrument, significant_decimals

LADDER = 10
TOUCH_RATE_PER_S = 0.02
MAX_CELLS = 600_000
_ETA_X = np.array([0.0, 10.0, 50.0, 100.0, 200.0, 500.0, 1e6])
_ETA_Y = np.array([1.3, 1.3, 1.1, 1.0, 0.8, 0.4, 0.4])


@dataclass
class Chunk:
    """The diffs of steps [k0, k1) of one book, and its book at chosen steps."""

    k0: int
    k1: int
    step: np.ndarray  # step of each change (sorted), then side 0 bid / 1 ask, price, qty units
    side: np.ndarray
    price: np.ndarray
    qty: np.ndarray
    depth_bid: np.ndarray  # USD within the label band of the mid, per step of the chunk
    depth_ask: np.ndarray
    snapshots: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]


class BookGenerator:
    """The levels of one book over time (see the module doc)."""

    def __init__(self, path: BookPath, instrument: Instrument, seed: int, step_s: float) -> None:
        self.path = path
        self.instrument = instrument
        self.rng = rng_for(seed, path.spec.venue.value, path.spec.symbol, "levels")
        self.scale = 10**instrument.price_decimals
        self.tick = instrument.tick_units
        self.qty_decimals = significant_decimals(instrument.lot)
        self.qty_scale = 10**self.qty_decimals
        self.step_s = step_s
        b = path.spec
        mid0 = float(path.mid[0])
        half0 = float(path.half_spread[0])
        self.fine = max(self.tick, round(0.5 * half0 * self.scale / self.tick) * self.tick)
        self.ratio_bps = max(5.0, 2.0 * self.tick / (mid0 * self.scale) * 1e4)
        self.ref = mid0
        self.gamma = b.gamma
        # C1: one side's USD depth within 1 % (pegged books: given within 0.5 %)
        side_total = b.depth_1pct_usd / 2.0
        self.c1 = side_total / (0.5**self.gamma) if b.peg is not None else side_total
        self.band = 0.005 if b.peg is not None else 0.01
        self.prev_price = np.zeros(0, dtype=np.int64)  # last step's published levels, by price
        self.prev_bid = np.zeros(0, dtype=np.int64)
        self.prev_ask = np.zeros(0, dtype=np.int64)
        self.base_bid = np.zeros(0, dtype=np.int64)  # the same without spoof walls
        self.base_ask = np.zeros(0, dtype=np.int64)

    # cumulative depth of one side within δ bps of the mid
    def _cum(self, d: np.ndarray) -> np.ndarray:
        d = np.minimum(d, 1000.0)
        inner = self.c1 * (np.minimum(d, 200.0) / 100.0) ** self.gamma
        outer = self.c1 * 2.0**self.gamma * (np.maximum(d, 200.0) / 200.0) ** 0.4
        return np.asarray(np.where(d <= 200.0, inner, outer), dtype=np.float64)

    def _columns(self, k0: int, k1: int) -> tuple[np.ndarray, ...]:
        p = self.path
        mid = p.mid[k0:k1] * self.scale
        hs = p.half_spread[k0:k1] * self.scale
        f = self.fine
        bb = (np.floor((mid - hs) / f) * f).astype(np.int64)
        ba = (np.ceil((mid + hs) / f) * f).astype(np.int64)
        ba = np.where(ba <= bb, bb + f, ba)
        lo_f = int(bb.min()) - (LADDER - 1) * f
        hi_f = int(ba.max()) + (LADDER - 1) * f
        fine = np.arange(lo_f, hi_f + 1, f, dtype=np.int64)
        lr = np.log1p(self.ratio_bps * 1e-4)
        ref = self.ref * self.scale
        j0 = int(np.floor(np.log(mid.min() * 0.9 / ref) / lr)) - 1
        j1 = int(np.ceil(np.log(mid.max() * 1.1 / ref) / lr)) + 1
        coarse = np.round(ref * np.exp(np.arange(j0, j1 + 1) * lr) / self.tick).astype(np.int64)
        coarse = np.unique(coarse[coarse > 0] * self.tick)
        prices = np.union1d(fine, coarse)
        if self.prev_bid.size:  # last step's levels: those that leave the book get deleted
            prices = np.union1d(prices, self.prev_bid[0])
        is_fine = np.isin(prices, fine, assume_unique=True)
        is_coarse = np.isin(prices, coarse, assume_unique=True)
        return mid, bb, ba, prices, is_fine, is_coarse

    def _width_estimate(self, k0: int, k1: int) -> int:
        mid = self.path.mid[k0:k1]
        lo, hi = float(mid.min()), float(mid.max())
        fine_n = (hi - lo) * 1.05 * self.scale / self.fine + 2 * LADDER
        coarse_n = np.log(hi * 1.1 / (lo * 0.9)) / np.log1p(self.ratio_bps * 1e-4)
        return int(fine_n + coarse_n)

    def chunks(self, k0: int, k1: int, snapshot_steps: set[int]) -> list[Chunk]:
        """Generate steps [k0, k1) (in as many pieces as memory wants)."""
        out = []
        start = k0
        while start < k1:
            end = k1
            while end - start > 8 and (end - start) * self._width_estimate(start, end) > MAX_CELLS:
                end = start + (end - start) // 2
            out.append(self._chunk(start, end, snapshot_steps))
            start = end
        return out

    def _chunk(self, k0: int, k1: int, snapshot_steps: set[int]) -> Chunk:
        p = self.path
        t = k1 - k0
        mid, bb, ba, prices, is_fine, is_coarse = self._columns(k0, k1)
        self._cols, self._bb, self._ba = prices, bb, ba
        u = len(prices)
        f = self.fine
        pr = prices[None, :]
        ladder_lo = (bb - (LADDER - 1) * f)[:, None]
        ladder_hi = (ba + (LADDER - 1) * f)[:, None]
        bid_active = (is_fine[None, :] & (pr >= ladder_lo) & (pr <= bb[:, None])) | (
            is_coarse[None, :] & (pr < ladder_lo) & (pr >= 0.9 * mid[:, None])
        )
        ask_active = (is_fine[None, :] & (pr <= ladder_hi) & (pr >= ba[:, None])) | (
            is_coarse[None, :] & (pr > ladder_hi) & (pr <= 1.1 * mid[:, None])
        )
        touch_p = 1.0 - np.exp(-TOUCH_RATE_PER_S * p.cancel[k0:k1] * self.step_s)
        # touches: Poisson over the chunk, rows by their rate, columns uniform (sparse draw)
        count = int(self.rng.poisson(float(touch_p.sum()) * u))
        touched = np.zeros((t, u), dtype=np.bool_)
        if count:
            rows = np.searchsorted(np.cumsum(touch_p) / touch_p.sum(), self.rng.random(count))
            touched[np.minimum(rows, t - 1), self.rng.integers(0, u, count)] = True
        prev_pub_b, prev_pub_a = (
            self._lookup(prices, self.prev_bid),
            self._lookup(prices, self.prev_ask),
        )
        base_b, base_a = self._lookup(prices, self.base_bid), self._lookup(prices, self.base_ask)
        quote_usd = p.quote_usd[k0:k1]
        qb = self._hold(touched, bid_active, base_b, mid, quote_usd, p.depth_bid[k0:k1])
        qa = self._hold(touched, ask_active, base_a, mid, quote_usd, p.depth_ask[k0:k1])
        per_unit = (prices[None, :] / self.scale) * quote_usd[:, None] / self.qty_scale
        pub_b = qb.copy()
        for w0, w1, wprice, wusd in p.walls:
            lo, hi = max(w0, k0), min(w1, k1 - 1)
            if lo > hi:
                continue
            j = int(np.argmin(np.abs(prices - wprice * self.scale)))
            rows = np.arange(lo - k0, hi - k0 + 1)
            rows = rows[bid_active[rows, j]]
            wq = round(wusd / float(per_unit[rows[0], j])) if rows.size else 0
            pub_b[rows, j] += wq
        # remember the last step for the next chunk
        last_b, last_a = pub_b[-1], qa[-1]
        keep = (last_b > 0) | (last_a > 0)
        self.prev_price = prices[keep]
        self.prev_bid = np.stack([prices[keep], last_b[keep]])
        self.prev_ask = np.stack([prices[keep], last_a[keep]])
        self.base_bid = np.stack([prices[keep], qb[-1][keep]])
        self.base_ask = self.prev_ask
        # diffs per side
        steps, sides, pxs, qtys = [], [], [], []
        for side, pub, prev in ((0, pub_b, prev_pub_b), (1, qa, prev_pub_a)):
            full = np.vstack([prev[None, :], pub])
            rows, cols = np.nonzero(full[1:] != full[:-1])
            steps.append(rows + k0)
            sides.append(np.full(rows.size, side, dtype=np.int8))
            pxs.append(prices[cols])
            qtys.append(full[1:][rows, cols])
        step = np.concatenate(steps)
        order = np.lexsort((np.concatenate(pxs), np.concatenate(sides), step))
        band = self.band * mid[:, None]
        near = np.abs(pr - mid[:, None]) <= band
        depth_bid = (np.where(near, pub_b, 0) * per_unit).sum(axis=1)
        depth_ask = (np.where(near, qa, 0) * per_unit).sum(axis=1)
        snaps = {}
        for k in snapshot_steps:
            if k0 <= k < k1:
                r = k - k0
                bmask, amask = pub_b[r] > 0, qa[r] > 0
                snaps[k] = (
                    prices[bmask][::-1],
                    pub_b[r][bmask][::-1],
                    prices[amask],
                    qa[r][amask],
                )
        return Chunk(
            k0,
            k1,
            step[order],
            np.concatenate(sides)[order],
            np.concatenate(pxs)[order],
            np.concatenate(qtys)[order],
            depth_bid,
            depth_ask,
            snaps,
        )

    @staticmethod
    def _lookup(prices: np.ndarray, table: np.ndarray) -> np.ndarray:
        """Last step's size at each of ``prices`` (0 where it had none)."""
        out = np.zeros(len(prices), dtype=np.int64)
        if table.size == 0:
            return out
        known, qty = table[0], table[1]
        pos = np.searchsorted(known, prices)
        pos = np.minimum(pos, len(known) - 1)
        hit = known[pos] == prices
        out[hit] = qty[pos[hit]]
        return out

    def _sizes(
        self,
        rows: np.ndarray,
        cols: np.ndarray,
        prices: np.ndarray,
        mid: np.ndarray,
        quote_usd: np.ndarray,
        m: np.ndarray,
        bb: np.ndarray,
        ba: np.ndarray,
    ) -> np.ndarray:
        """Fresh sizes (qty units) of the levels drawn at these cells."""
        px = prices[cols].astype(np.float64)
        md = mid[rows]
        dist = np.abs(px - md) / md * 1e4
        f = self.fine
        in_ladder = (px >= bb[rows] - (LADDER - 1) * f) & (px <= ba[rows] + (LADDER - 1) * f)
        width = np.where(in_ladder, f / md * 1e4, self.ratio_bps)
        usd = self._cum(dist + width / 2.0) - self._cum(np.maximum(dist - width / 2.0, 0.0))
        eta = np.interp(dist, _ETA_X, _ETA_Y)
        noise = np.exp(0.5 * self.rng.standard_normal(rows.size) - 0.125)
        mult = np.exp(eta * np.log(np.maximum(m[rows], 1e-6)))
        per_unit = px / self.scale * quote_usd[rows] / self.qty_scale
        return np.asarray(np.rint(usd * noise * mult / per_unit), dtype=np.int64)

    def _hold(
        self,
        touched: np.ndarray,
        active: np.ndarray,
        carried: np.ndarray,
        mid: np.ndarray,
        quote_usd: np.ndarray,
        m: np.ndarray,
    ) -> np.ndarray:
        """Each active level's size as of its last touch (or as carried in), 0 when inactive.
        Sizes are drawn only where a level is touched or enters the book."""
        t, u = touched.shape
        was = np.vstack([(carried > 0)[None, :], active])
        entered = was[1:] & ~was[:-1]
        draw = (touched | entered) & active
        rows, cols = np.nonzero(draw)
        vals = np.zeros((t + 1, u), dtype=np.int64)
        vals[0] = carried
        if rows.size:
            vals[rows + 1, cols] = self._sizes(
                rows, cols, self._cols, mid, quote_usd, m, self._bb, self._ba
            )
        touch = np.vstack([np.ones((1, u), dtype=np.bool_), draw])
        idx = np.where(touch, np.arange(t + 1)[:, None], 0)
        last = np.maximum.accumulate(idx, axis=0)[1:]
        held = np.take_along_axis(vals, last, axis=0)
        return np.asarray(np.where(active, held, 0), dtype=np.int64)
