"""What to open and ask for on one venue, shared by the monitor (daemon) and the recorder.

- :func:`plan_connections`: the venue's symbols cut into websocket connections within its
  streams-per-connection limit (book channels, and mark prices on their own host where the
  venue has one, Binance USD-M ``/market``);
- :func:`open_session`: the :class:`~feeds.session.WsSession` of one planned connection,
  with every frame, keepalive and hook the venue's adapter declares;
- :func:`rest_client` and :func:`instrument_answers`: the venue's REST client within its
  weight budget, and its metadata (paged where the venue pages it).

Venue differences are adapter attributes (feeds.contract); nothing here names a venue.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

import aiohttp

from feeds.coalesce import ReadCoalescer
from feeds.contract import HttpRequest, VenueAdapter
from feeds.rest import RestClient
from feeds.session import ConnectionPolicy, ControlBudget, DisconnectReason, FeedHealth, WsSession
from monitor.domain import Venue
from monitor.settings import Settings, VenueSettings

MAX_INSTRUMENT_PAGES = 50  # a paginated metadata answer is followed this far at most


@dataclass(frozen=True, slots=True)
class ConnectionPlan:
    """One websocket connection: its URL, symbols and channels.

    ``carries_books``: its loss invalidates its books (a mark-price-only connection's does
    not).
    """

    url: str
    symbols: tuple[str, ...]
    channels: tuple[str, ...]
    carries_books: bool


def _chunks(items: Sequence[str], size: int) -> list[tuple[str, ...]]:
    size = max(1, size)
    return [tuple(items[i : i + size]) for i in range(0, len(items), size)]


def plan_connections(
    table: VenueSettings, adapter: VenueAdapter, symbols: Sequence[str] | None = None
) -> list[ConnectionPlan]:
    """The connections carrying ``symbols`` (default: the venue's configured symbols)."""
    symbols = table.symbols if symbols is None else symbols
    groups: list[tuple[str, list[str], bool]] = []
    if table.market_ws_url and table.mark_price_stream:
        groups.append((table.ws_url, [table.depth_stream], True))
        groups.append((table.market_ws_url, [table.mark_price_stream], False))
    else:
        channels = [table.depth_stream]
        if table.mark_price_stream:
            channels.append(table.mark_price_stream)
        groups.append((table.ws_url, channels, True))
    plans = []
    for base_url, channels, carries_books in groups:
        per_connection = max(1, adapter.limits.streams_per_connection // len(channels))
        for part in _chunks(symbols, per_connection):
            url = adapter.ws_url(base_url, list(part), channels)
            plans.append(ConnectionPlan(url, part, tuple(channels), carries_books))
    return plans


def open_session(
    adapter: VenueAdapter,
    plan: ConnectionPlan,
    *,
    on_frame: Callable[[str | bytes, int], None],
    on_batch: Callable[[], None] | None = None,
    on_connect: Callable[[], None] | None = None,
    on_disconnect: Callable[[DisconnectReason], None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    policy: ConnectionPolicy,
    health: FeedHealth,
    connect_gate: Callable[[], Awaitable[None]] | None = None,
    rng: random.Random | None = None,
    text_as_bytes: bool = False,
    coalescer: ReadCoalescer | None = None,
) -> WsSession:
    """The session of one planned connection, as the venue's adapter says to run it."""
    limits = adapter.limits
    subscribe = (
        []
        if adapter.subscribe_in_url
        else adapter.subscribe_frames(list(plan.symbols), list(plan.channels))
    )
    return WsSession(
        plan.url,
        venue=adapter.venue.value,
        on_frame=on_frame,
        on_batch=on_batch,
        subscribe_frames=subscribe,
        open_frames=adapter.open_frames(),
        on_connect=on_connect,
        on_disconnect=on_disconnect,
        policy=policy,
        ping_interval_s=adapter.ping_interval_s,
        keepalive_s=adapter.keepalive_s,
        keepalive_frame=adapter.keepalive_frame(),
        reply_to=adapter.reply_to,
        sequence=adapter.connection_sequence,
        control=ControlBudget(limits.control_per_s, limits.control_per_hour),
        connect_gate=connect_gate,
        notice=adapter.reconnect_notice,
        on_notice=on_notice,
        coalescer=coalescer,
        health=health,
        rng=rng,
        max_frame_bytes=limits.max_frame_bytes,
        text_as_bytes=text_as_bytes,
    )


def rest_client(
    http: aiohttp.ClientSession, venue: Venue, adapter: VenueAdapter, settings: Settings
) -> RestClient:
    """The venue's REST client, within its weight budget."""
    return RestClient.for_venue(
        http,
        venue,
        weight_limit_per_minute=adapter.weight_limit_per_minute,
        used_weight_header=adapter.used_weight_header,
        timeout_s=settings.connection.snapshot_timeout_s,
    )


async def fetch(
    rest: RestClient, request: HttpRequest, max_retries: int | None = None, *, keep: int = 0
) -> str:
    """The text of one REST answer (GET, or POST of the request's body); ``keep``: see
    :meth:`feeds.rest.WeightBudget.spend`."""
    return await rest.get_text(
        request.url, weight=request.weight, max_retries=max_retries, body=request.body, keep=keep
    )


def _next_page(
    adapter: VenueAdapter, request: HttpRequest, text: str, pages: int
) -> HttpRequest | None:
    follow = adapter.next_instruments_page
    if follow is None or pages >= MAX_INSTRUMENT_PAGES:
        return None
    following = follow(request, text)
    return None if following is None or following.url == request.url else following


async def instrument_answers(
    adapter: VenueAdapter,
    rest_url: str,
    get: Callable[[HttpRequest], Awaitable[str | None]],
) -> AsyncIterator[tuple[HttpRequest, str]]:
    """Every metadata answer of the venue, following its pages (Bybit's cursor) within
    MAX_INSTRUMENT_PAGES. ``get`` fetches one request (None: failed, that chain stops)."""
    for first in adapter.instruments_requests(rest_url):
        request: HttpRequest | None = first
        pages = 0
        while request is not None:
            text = await get(request)
            if text is None:
                break
            yield request, text
            pages += 1
            request = _next_page(adapter, request, text, pages)
