"""The resync state of one book: one explicit state machine, owned by the pipeline's books.

::

    NEEDS_SNAPSHOT --request()/expect()--> REQUESTED --snapshot_applied()--> SYNCED
          ^                                    |                                |
          +------give_up()/snapshot_stale()----+                                |
          +------------------------------lose(reason)---------------------------+

- ``lose`` (a gap, a rejected event, a lost connection): the book is thrown away and needs
  a snapshot; from any state, counted in ``resyncs``.
- ``request``: the snapshot is asked for (REST venues: fetched; stream venues: the book is
  resubscribed). ``expect(deadline)``: a subscription that brings the snapshot in-band was
  sent (a connect, a resubscribe): past ``deadline`` it is asked for again.
- ``give_up``: the request failed or timed out: asked for again (the daemon's next round).
- ``snapshot_stale``: a REST snapshot older than the first buffered delta: asked again.
- ``snapshot_applied``: the snapshot is in the book (the deltas buffered meanwhile are
  replayed by the pipeline).

The pipeline applies the transitions that messages cause; the daemon those that requests,
subscriptions and deadlines cause, through :class:`Resync` (the books' machines by key).
Nothing else holds a book's resync state.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum

from monitor.domain import Venue


class SyncState(Enum):
    NEEDS_SNAPSHOT = "needs_snapshot"  # thrown away, or never synced: ask for a snapshot
    REQUESTED = "requested"  # a snapshot was asked for (REST fetch or in-band subscription)
    SYNCED = "synced"  # a snapshot was applied; deltas chain onto it


@dataclass(slots=True)
class BookSync:
    """The resync state machine of one book (see the module doc for the transitions)."""

    state: SyncState = SyncState.NEEDS_SNAPSHOT
    resyncs: int = 0  # times the book was thrown away
    snapshots: int = 0  # snapshots that arrived (applied or stale)
    stale_snapshots: int = 0  # REST snapshots older than the first buffered delta
    fetch_failures: int = 0  # consecutive failed REST fetches (their backoff)
    deadline: float | None = None  # REQUESTED in-band: when to ask again (monotonic s)

    @property
    def needs_snapshot(self) -> bool:
        return self.state is not SyncState.SYNCED

    def lose(self) -> None:
        self.state = SyncState.NEEDS_SNAPSHOT
        self.deadline = None
        self.resyncs += 1

    def request(self) -> bool:
        """NEEDS_SNAPSHOT -> REQUESTED; False (no change) from any other state."""
        if self.state is not SyncState.NEEDS_SNAPSHOT:
            return False
        self.state = SyncState.REQUESTED
        return True

    def expect(self, deadline: float) -> None:
        """An in-band snapshot is on its way (a subscription was sent); SYNCED books stay."""
        if self.state is not SyncState.SYNCED:
            self.state = SyncState.REQUESTED
            self.deadline = deadline

    @property
    def awaiting_in_band(self) -> bool:
        """A subscription that brings this book's snapshot was sent and has not answered."""
        return self.state is SyncState.REQUESTED and self.deadline is not None

    def give_up(self) -> None:
        """REQUESTED -> NEEDS_SNAPSHOT: the request failed or timed out."""
        if self.state is SyncState.REQUESTED:
            self.state = SyncState.NEEDS_SNAPSHOT
            self.deadline = None

    def fetch_failed(self) -> int:
        """A REST fetch failed (counted for its backoff; the caller gives up after it);
        returns the consecutive failures before this one."""
        failures = self.fetch_failures
        self.fetch_failures += 1
        return failures

    def fetched(self) -> None:
        self.fetch_failures = 0

    def snapshot_stale(self) -> None:
        self.snapshots += 1
        self.stale_snapshots += 1
        self.state = SyncState.NEEDS_SNAPSHOT
        self.deadline = None

    def snapshot_applied(self, count: int = 1) -> None:
        """``count`` snapshots were applied one after the other (in-band snapshots of a
        batch: the same as ``count`` calls)."""
        self.snapshots += count
        self.state = SyncState.SYNCED
        self.deadline = None


BookKey = tuple[Venue, str]


class Resync:
    """Every book's :class:`BookSync`, by (venue, symbol): the one owner of resync state."""

    def __init__(self) -> None:
        self._books: dict[BookKey, BookSync] = {}

    def add(self, key: BookKey) -> BookSync:
        return self._books.setdefault(key, BookSync())

    def get(self, key: BookKey) -> BookSync | None:
        return self._books.get(key)

    def __iter__(self) -> Iterator[tuple[BookKey, BookSync]]:
        return iter(self._books.items())

    def take_requests(self) -> list[BookKey]:
        """Books that need a snapshot now, moved to REQUESTED (each is handed out once
        until it is applied, given up or lost)."""
        return [key for key, sync in self._books.items() if sync.request()]

    def expect(self, venue: Venue, symbols: Iterable[str], deadline: float) -> None:
        for symbol in symbols:
            sync = self._books.get((venue, symbol))
            if sync is not None:
                sync.expect(deadline)

    def expired(self, now: float) -> list[BookKey]:
        """Books whose in-band snapshot is past its deadline (the caller gives them up)."""
        return [
            key
            for key, sync in self._books.items()
            if sync.awaiting_in_band and sync.deadline is not None and now > sync.deadline
        ]
