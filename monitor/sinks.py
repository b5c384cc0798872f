"""Consumers of the tick sample, behind one small protocol.

A :class:`Sink` receives every :class:`~monitor.sample.TickSample` in tick order. The two
drivers treat it the same way:

- the daemon gives each sink its own bounded queue and task (:class:`SinkQueue`): the tick
  never waits for a slow consumer; when a queue is full the oldest sample is dropped and
  counted (``overflow``), and the sink is told how many it missed;
- replay awaits each sink in turn for every tick (:func:`drive`), so a replay is a
  deterministic backtest of everything downstream of the books.

Metrics-out (:class:`JsonLinesSink`), the status line, storage, the API's live state and the
alert engine are sinks; adding one touches neither the daemon nor replay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import IO, Any, Protocol, runtime_checkable

import msgspec

from monitor.log import get_logger
from monitor.sample import TickSample

log = get_logger("monitor.sinks")


@runtime_checkable
class Sink(Protocol):
    """One consumer of tick samples.

    ``write`` is awaited once per tick, in order; it may keep the sample (it is immutable
    and owns its arrays). ``close`` is awaited once at the end (flush, release files).
    """

    name: str

    async def write(self, sample: TickSample) -> None: ...

    async def close(self) -> None: ...


async def drive(sinks: Sequence[Sink], sample: TickSample) -> None:
    """Replay's driver: every sink gets the sample before the next tick is computed."""
    for sink in sinks:
        await sink.write(sample)


class SinkQueue:
    """The daemon's driver for one sink: a bounded queue and one task draining it."""

    def __init__(self, sink: Sink, maxsize: int = 64) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[TickSample] = asyncio.Queue(maxsize)
        self.overflow = 0  # samples dropped because the sink fell behind
        self.written = 0
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def put(self, sample: TickSample) -> None:
        """Never blocks: a full queue loses its oldest sample (counted)."""
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
                self.queue.task_done()
            self.overflow += 1
            if self.overflow == 1 or self.overflow % 100 == 0:
                log.warning("sink.overflow", sink=self.sink.name, dropped=self.overflow)
        self.queue.put_nowait(sample)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"sink:{self.sink.name}")

    async def _drain(self) -> None:
        while True:
            sample = await self.queue.get()
            try:
                await self.sink.write(sample)
                self.written += 1
            except Exception:  # task boundary: one bad sample must not end the sink
                self.failures += 1
                log.exception("sink.failed", sink=self.sink.name)
            finally:
                self.queue.task_done()

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (within ``timeout_s``), then close the sink."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), timeout_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.sink.close()
        except Exception:
            log.exception("sink.close_failed", sink=self.sink.name)


class JsonLinesSink:
    """``--metrics-out``: JSON lines, each with a ``"kind"``.

    Per tick: ``"book"`` for every changed book (or score state), ``"asset"`` for every
    asset with a changed book or a score event, ``"fx"`` for every quote currency whose
    rate or ``assumed`` flag changed (all of them on the first tick).
    """

    name = "metrics-out"

    def __init__(self, out: IO[bytes], *, changed_only: bool = True) -> None:
        self.out = out
        self.changed_only = changed_only
        self.rows = 0
        self._encode = msgspec.json.Encoder().encode
        self._fx_written: dict[str, tuple[float | None, bool]] = {}

    async def write(self, sample: TickSample) -> None:
        encode = self._encode
        changed_only = self.changed_only
        lines = [encode(r) for r in sample.records(changed_only=changed_only)]
        lines += [encode(a) for a in sample.asset_records(changed_only=changed_only)]
        for record in sample.fx_records():
            key = (record["usd"], record["assumed"])
            if not changed_only or self._fx_written.get(record["currency"]) != key:
                self._fx_written[record["currency"]] = key
                lines.append(encode(record))
        if lines:
            lines.append(b"")
            self.out.write(b"\n".join(lines))
            self.rows += len(lines) - 1

    async def close(self) -> None:
        self.out.flush()


class RuleEvents(Protocol):
    """What runs the alert rules on a sample (monitor.alerting.RuleRunner)."""

    def step(self, sample: TickSample) -> Sequence[Any]: ...


class AlertsSink:
    """``--alerts-out``: one JSON object per score state change (``"kind": "score"``) and,
    with ``rules``, per alert rule event (``"kind": "rule"``: pending, firing, resolved), in
    the recording's clock. No delivery: a backtest of the rules."""

    name = "alerts-out"

    def __init__(self, out: IO[bytes], rules: RuleEvents | None = None) -> None:
        self.out = out
        self.rules = rules
        self.events = 0
        self.rule_events = 0
        self._encode = msgspec.json.Encoder().encode

    async def write(self, sample: TickSample) -> None:
        encode = self._encode
        if sample.events:
            self.out.write(b"".join(encode(e.record()) + b"\n" for e in sample.events))
            self.events += len(sample.events)
        if self.rules is not None:
            fired = self.rules.step(sample)
            if fired:
                self.out.write(b"".join(encode(e.record()) + b"\n" for e in fired))
                self.rule_events += len(fired)

    async def close(self) -> None:
        self.out.flush()


class CallbackSink:
    """Calls ``fn(sample)`` for every tick (embedding liqmon, tests, benchmarks)."""

    def __init__(self, fn: Callable[[TickSample], None], name: str = "callback") -> None:
        self.fn = fn
        self.name = name

    async def write(self, sample: TickSample) -> None:
        self.fn(sample)

    async def close(self) -> None:
        return None
