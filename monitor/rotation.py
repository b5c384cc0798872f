"""Rotation: a connection is replaced before the venue's connection lifetime ends, or at
once when the venue gives notice that it will close it (OKX 64008).

Binance closes a connection after 24 h. Shortly before (``ROTATE_AT`` of the lifetime, plus
jitter so that connections opened together do not rotate together), a replacement with the
same plan connects and subscribes; the old one is muted once the new one takes over and
then closed, so no book goes invalid: REST venues' duplicate deltas are dropped as stale by
sequence id while both deliver, and stream venues switch over at the new subscription's
snapshots.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from feeds.session import WsSession
from monitor.planning import ConnectionPlan

ROTATE_AT = 0.9  # of the venue's connection lifetime (Binance: after 21.6 h of 24 h)
MAX_JITTER_S = 60.0
TAKEOVER_POLL_S = 0.01


@dataclass(eq=False)
class LiveConnection:
    """A planned connection and its session, with what rotation and resync need to know."""

    plan: ConnectionPlan
    session: WsSession | None = None
    live: bool = False  # delivering frames since its last connect
    muted: bool = False  # replaced by a rotation: its frames are no longer used
    # the venue gave notice that it will close this connection: replace it now
    replace_now: asyncio.Event = field(default_factory=asyncio.Event)


def rotation_after_s(lifetime_s: float, override_s: float | None = None) -> float:
    """How long into a connection's life it is replaced (0: never; the venue keeps it)."""
    if override_s:
        return override_s
    return lifetime_s * ROTATE_AT if lifetime_s else 0.0


async def until_due(connection: LiveConnection, after_s: float, rng: random.Random) -> str:
    """Returns why the connection is to be replaced now: ``"lifetime"`` once its current
    connection has lived ``after_s`` (plus jitter; 0: never, and a reconnect starts the
    count again), or ``"notice"`` as soon as the venue gives notice."""
    session = connection.session
    assert session is not None
    while True:
        await session.connected.wait()
        connected_at = session.connected_at or time.monotonic()
        wait_s = None
        if after_s:
            jitter_s = rng.uniform(0.0, min(MAX_JITTER_S, after_s * 0.05))
            wait_s = max(0.0, connected_at + after_s + jitter_s - time.monotonic())
        try:
            await asyncio.wait_for(connection.replace_now.wait(), wait_s)
        except TimeoutError:
            if session.connected_at == connected_at:
                return "lifetime"  # still the same connection: its time is up
        else:
            return "notice"  # the venue will close it soon


async def switch_over(old: LiveConnection, new: LiveConnection, *, in_band: bool) -> None:
    """Mute ``old`` once ``new`` has taken over, then close it.

    ``in_band``: snapshots come with the subscription (the new one's take over as soon as
    it is connected); otherwise both deliver until the new one does.
    """
    assert old.session is not None and new.session is not None
    await new.session.connected.wait()
    if not in_band:
        while not new.live:
            await asyncio.sleep(TAKEOVER_POLL_S)
    old.muted = True
    await old.session.stop()
