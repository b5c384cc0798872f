"""The black box's memory: each venue's most recent raw frames, as received.

The daemon hands every batch of websocket frames it passes to the pipeline to its venue's
:class:`FrameRing` as well (``Daemon.frame_rings``; only when evidence capture is on), and
every REST book snapshot it applies. The hot path pays one tuple of the batch's frame
references and one of its receive times, and a length sum: no frame is copied, decoded or
parsed. The ring is bounded by age, by frame count and by bytes; the oldest batches go
first.

:meth:`FrameRing.window` is the capture side (an alert fired): the frames received in a
time range, optionally only those naming one of some symbols (a plain bytes substring
test, so a venue whose connections multiplex many books keeps the alert's book's frames),
as recording :class:`~feeds.recording.Record` objects that ``liqmon replay`` reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from feeds.recording import Record, RecordKind

WS = 0
HTTP = 1


@dataclass(frozen=True, slots=True)
class RingLimits:
    """How much a venue's ring keeps: the newest ``max_age_s`` of frames, at most
    ``max_frames`` frames and ``max_bytes`` bytes of them."""

    max_age_s: float = 60.0
    max_frames: int = 200_000
    max_bytes: int = 32_000_000


@dataclass(frozen=True, slots=True)
class FrameWindow:
    """What :meth:`FrameRing.window` found: the records (oldest first), and whether the
    capture's bounds cut it (the oldest frames are the ones left out)."""

    records: list[Record]
    truncated: bool
    nbytes: int


class FrameRing:
    """One venue's recent frames: batches of (kind, url, frames, receive times, bytes)."""

    def __init__(self, venue: str, ws_url: str, limits: RingLimits | None = None) -> None:
        self.venue = venue
        self.ws_url = ws_url
        self.limits = limits or RingLimits()
        self._max_age_ns = int(self.limits.max_age_s * 1e9)
        self._max_frames = self.limits.max_frames
        self._max_bytes = self.limits.max_bytes
        self._batches: deque[tuple[int, str, tuple[bytes | str, ...], tuple[int, ...], int]] = (
            deque()
        )
        self.frames = 0
        self.nbytes = 0
        self.evicted = 0  # frames pushed out by the count or bytes bound before their age

    def add(self, frames: Sequence[bytes | str], stamps: Sequence[int]) -> None:
        """A batch of websocket frames, as handed to the pipeline (the lists are reused by
        the caller: their current items are kept, not the lists)."""
        if not frames:
            return
        size = sum(map(len, frames))
        last = stamps[-1]
        batches = self._batches
        batches.append((WS, self.ws_url, tuple(frames), tuple(stamps), size))
        self.frames += len(frames)
        self.nbytes += size
        if (  # the common case: nothing to evict (checked inline: one call less per batch)
            batches[0][3][-1] < last - self._max_age_ns
            or self.frames > self._max_frames
            or self.nbytes > self._max_bytes
        ):
            self._trim(last)

    def add_http(self, url: str, text: bytes | str, recv_ns: int) -> None:
        """A REST answer applied to the books (a snapshot): replay needs it too."""
        self._batches.append((HTTP, url, (text,), (recv_ns,), len(text)))
        self.frames += 1
        self.nbytes += len(text)
        self._trim(recv_ns)

    def _trim(self, now_ns: int) -> None:
        limits = self.limits
        horizon = now_ns - self._max_age_ns
        batches = self._batches
        while len(batches) > 1 and (
            batches[0][3][-1] < horizon
            or self.frames > limits.max_frames
            or self.nbytes > limits.max_bytes
        ):
            _, _, frames, stamps, size = batches.popleft()
            if stamps[-1] >= horizon:
                self.evicted += len(frames)
            self.frames -= len(frames)
            self.nbytes -= size

    @property
    def oldest_ns(self) -> int | None:
        return self._batches[0][3][0] if self._batches else None

    def window(
        self,
        start_ns: int,
        end_ns: int,
        *,
        symbols: Iterable[str] = (),
        max_bytes: int = 8_000_000,
    ) -> FrameWindow:
        """The frames received in [start_ns, end_ns], oldest first; with ``symbols``,
        only the websocket frames that name one of them as a JSON string (``"BTC-USDT"``,
        as written or in lower or upper case: not ``"BTC-USDT-SWAP"``) and the REST answers
        whose URL or text does.
        If no websocket frame names them, the venue's protocol does not name its books in
        its frames: all are kept. At most ``max_bytes`` of frame text: beyond it the
        oldest are left out (``truncated``)."""
        names = {n for s in symbols if s for n in (s, s.lower(), s.upper())}
        # a JSON string equal to the symbol: "BTC-USDT" names BTC-USDT, not BTC-USDT-SWAP
        needles = tuple(f'"{n}"'.encode() for n in names)
        in_urls = tuple(n.encode() for n in names)
        picked: list[tuple[int, str, bytes | str, int]] = []
        named = False
        for kind, url, frames, stamps, _ in self._batches:
            if stamps[-1] < start_ns or stamps[0] > end_ns:
                continue
            for data, ts in zip(frames, stamps, strict=True):
                if start_ns <= ts <= end_ns:
                    picked.append((kind, url, data, ts))
        if needles:
            kept = [
                p
                for p in picked
                if _names(p[2], needles) or (p[0] == HTTP and _names(p[1], in_urls))
            ]
            named = any(p[0] == WS for p in kept)
            if named:
                picked = kept
        total = 0
        first = len(picked)
        for i in range(len(picked) - 1, -1, -1):  # the newest first: keep the alert's end
            size = len(picked[i][2])
            if total + size > max_bytes:
                break
            total += size
            first = i
        truncated = first > 0
        records = [
            Record(
                ts=ts / 1e9,
                venue=self.venue,
                kind=RecordKind.WS if kind == WS else RecordKind.HTTP,
                url=url,
                data=data.decode("utf-8", "replace") if isinstance(data, bytes) else data,
            )
            for kind, url, data, ts in picked[first:]
        ]
        return FrameWindow(records, truncated, total)


def _names(data: bytes | str, needles: tuple[bytes, ...]) -> bool:
    raw = data.encode() if isinstance(data, str) else data
    return any(n in raw for n in needles)
