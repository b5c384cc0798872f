"""Settings: config/default.toml, then user TOML files, then LIQMON_* environment overrides.

The layers are merged key by key (tables recursively, arrays replaced), validated once
into frozen structs and passed explicitly. ``LIQMON_<SECTION>__<KEY>[__<SUBKEY>...]``
variables override keys (a double underscore separates levels, arrays are comma
separated); other ``LIQMON_*`` variables, such as secrets, are not settings and are left
to the code that reads them. Every problem is a ConfigError naming the file or variable
that last set the offending key, the dotted key and what was expected.
"""

from __future__ import annotations

import enum
import importlib.resources
import itertools
import os
import re
import tomllib
from collections.abc import Callable, Container, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, Literal, NamedTuple, TypeVar

import msgspec
import msgspec.inspect as mi
import msgspec.structs
from msgspec import Meta, Struct

from alerts.subscriptions import AlertsSettings, SubscriptionSpec
from alerts.subscriptions import check_all as check_subscriptions
from monitor.domain import Venue
from monitor.errors import ConfigError
from monitor.log import LogFormat, LogLevel

PositiveInt = Annotated[int, Meta(gt=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]
EventLoop = Literal["auto", "uvloop", "asyncio"]
NonEmptyStr = Annotated[str, Meta(min_length=1)]
NonNegativeFloat = Annotated[float, Meta(ge=0)]
_WS_URL_PATTERN: Final = r"^wss?://\S+$"
_REST_URL_PATTERN: Final = r"^https?://\S+$"
_CURRENCY_PATTERN: Final = r"^[A-Z0-9]+$"
_LISTEN_PATTERN: Final = r"^[^\s:]*:\d{1,5}$"
WsUrl = Annotated[str, Meta(pattern=_WS_URL_PATTERN)]
RestUrl = Annotated[str, Meta(pattern=_REST_URL_PATTERN)]
DepthBandPct = Annotated[float, Meta(gt=0, le=10)]
CurrencyCode = Annotated[str, Meta(pattern=_CURRENCY_PATTERN)]
Listen = Annotated[str, Meta(pattern=_LISTEN_PATTERN)]
# What each pattern means, for error messages (msgspec would print the regex).
_PATTERN_MEANINGS: Final = {
    _WS_URL_PATTERN: "a ws:// or wss:// URL without spaces",
    _REST_URL_PATTERN: "an http:// or https:// URL without spaces",
    _CURRENCY_PATTERN: "an upper-case currency code such as USDT",
    _LISTEN_PATTERN: "HOST:PORT, e.g. 127.0.0.1:8080",
}


DEFAULT_DATA_DIR: Final = "~/.liqmon"
ROOT_DATA_DIR: Final = "/var/lib/liqmon"


class MonitorSettings(Struct, frozen=True, forbid_unknown_fields=True):
    """The daemon itself: tick, book size, data directory, logging."""

    tick_ms: PositiveInt
    book_capacity: PositiveInt
    data_dir: NonEmptyStr
    log_level: LogLevel
    log_format: LogFormat
    # the asyncio event loop of `liqmon run`, `serve`, `record` and `sim`: uvloop (libuv)
    # where it is installed ("auto"), else the standard library's
    event_loop: EventLoop = "auto"

    @property
    def data_path(self) -> Path:
        """`data_dir` with ``~`` expanded.

        Run as root, the default ``~/.liqmon`` becomes ``/var/lib/liqmon``: the embedded
        PostgreSQL then runs as a system user that cannot enter root's home (mode 0700).
        """
        if self.data_dir == DEFAULT_DATA_DIR and hasattr(os, "geteuid") and os.geteuid() == 0:
            return Path(ROOT_DATA_DIR)
        return Path(self.data_dir).expanduser()


class MetricsSettings(Struct, frozen=True, forbid_unknown_fields=True):
    """What each book is measured for on every tick."""

    depth_bands_pct: Annotated[tuple[DepthBandPct, ...], Meta(min_length=1)]
    slippage_notionals_usd: Annotated[tuple[PositiveFloat, ...], Meta(min_length=1)]


class FxSettings(Struct, frozen=True, forbid_unknown_fields=True):
    """Conversion of quote currencies to USD."""

    usd_stables: tuple[CurrencyCode, ...]


class PegPair(Struct, frozen=True, forbid_unknown_fields=True):
    """One ``[[analytics.pegs]]`` entry: an asset that should trade at a fair rate to another."""

    asset: CurrencyCode
    against: CurrencyCode
    # None: derived per book as the median rate on the *other* venues (never the venue's own)
    fair: PositiveFloat | None = None
    warn_bps: PositiveFloat = 50.0
    alert_bps: PositiveFloat = 200.0


class ScoreWeights(Struct, frozen=True, forbid_unknown_fields=True):
    """Weights of the liquidity-vacuum score's components (they must sum to 1)."""

    depth: NonNegativeFloat = 0.30
    withdrawal: NonNegativeFloat = 0.20
    spread: NonNegativeFloat = 0.15
    impact: NonNegativeFloat = 0.15
    asymmetry: NonNegativeFloat = 0.10
    dislocation: NonNegativeFloat = 0.10


class AnalyticsSettings(Struct, frozen=True, forbid_unknown_fields=True):
    """Cross-venue analytics, live FX and the liquidity-vacuum score (``[analytics]``)."""

    fx_source_stale_s: PositiveFloat = 5.0
    fx_carry_s: PositiveFloat = 60.0
    fx_min_move_bps: NonNegativeFloat = 0.5
    outlier_bps: PositiveFloat = 50.0
    clip_mads: PositiveFloat = 3.0
    funding_interval_h: dict[Venue, PositiveFloat] = {}
    default_funding_interval_h: PositiveFloat = 8.0
    pegs: tuple[PegPair, ...] = ()
    weights: ScoreWeights = ScoreWeights()
    # empty: the reference weights (0.2, 0.3, 0.3, 0.2) for 4 bands, equal weights otherwise
    depth_band_weights: tuple[NonNegativeFloat, ...] = ()
    baseline_half_life_s: PositiveFloat = 14_400.0
    scale_half_life_s: PositiveFloat = 86_400.0
    rebaseline_after_s: PositiveFloat = 21_600.0
    warmup_s: NonNegativeFloat = 60.0
    baseline_fast_s: NonNegativeFloat = 600.0
    smooth_samples: Annotated[int, Meta(ge=1, le=64)] = 10
    resync_quiet_s: NonNegativeFloat = 30.0
    # the withdrawal component's window (EWMA time constant of the 1% depth and of its
    # gross decrease rate) and the mark-price basis averaging windows compared
    withdrawal_window_s: PositiveFloat = 60.0
    mark_windows_s: tuple[PositiveFloat, PositiveFloat] = (60.0, 150.0)
    enter_points: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = (40.0, 60.0, 80.0)
    enter_s: tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat] = (30.0, 20.0, 5.0)
    exit_points: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = (30.0, 45.0, 65.0)
    exit_s: tuple[NonNegativeFloat, NonNegativeFloat, NonNegativeFloat] = (180.0, 300.0, 300.0)
    min_dwell_s: NonNegativeFloat = 120.0
    scheduled_mask_points: NonNegativeFloat = 10.0
    scheduled_mask_s: NonNegativeFloat = 300.0
    scheduled_every_h: PositiveFloat = 8.0
    display_half_life_s: NonNegativeFloat = 15.0


class ConnectionSettings(Struct, frozen=True, forbid_unknown_fields=True):
    """Timeouts and reconnect backoff shared by every venue connection (seconds)."""

    connect_timeout_s: PositiveFloat
    receive_timeout_s: PositiveFloat
    backoff_initial_s: PositiveFloat
    backoff_max_s: PositiveFloat
    healthy_after_s: PositiveFloat
    snapshot_timeout_s: PositiveFloat
    policy_violation_backoff_s: PositiveFloat = 60.0
    # calm markets: the frames every connection read are applied to the books at most
    # once per this window (ms), unless a flush had batch_min_frames or more; 0: each
    # socket read at once (monitor.daemon.FlushWindow)
    batch_window_ms: Annotated[float, Meta(ge=0, le=100)] = 0.0
    batch_min_frames: PositiveInt = 32
    # calm markets: a socket wakes the monitor once coalesce_bytes wait in the kernel (a
    # quarter of it on a busy stream), or after coalesce_ms at most, and before each tick;
    # 0 for either: every frame wakes it at once (feeds.coalesce)
    coalesce_bytes: Annotated[int, Meta(ge=0, le=1 << 20)] = 65536
    coalesce_ms: Annotated[float, Meta(ge=0, le=1000)] = 250.0


class VenueSettings(Struct, frozen=True, forbid_unknown_fields=True):
    """One ``[venues.<venue id>]`` table."""

    enabled: bool
    ws_url: WsUrl
    rest_url: RestUrl
    depth_stream: NonEmptyStr
    symbols: tuple[str, ...]
    snapshot_limit: PositiveInt = 1000
    # REST venues: the depth of a book's first snapshot when the snapshot_limit ones do not
    # all fit the venue's weight budget at once (0: always snapshot_limit); such a book is
    # valid at once and deepened to snapshot_limit by a second sync as the budget allows;
    # one at or above snapshot_limit is snapshot_limit (no deepening)
    start_snapshot_limit: Annotated[int, Meta(ge=0)] = 0
    market_ws_url: WsUrl | None = None
    mark_price_stream: NonEmptyStr | None = None
    stale_after_s: PositiveFloat = 30.0


class TimescaleMode(enum.Enum):
    """Whether the schema uses TimescaleDB (hypertables, compression, aggregates)."""

    AUTO = "auto"  # use it when the server has the extension
    OFF = "off"  # plain PostgreSQL tables even where the extension exists


class DatabaseSettings(Struct, frozen=True, forbid_unknown_fields=True):
    """History: where metric samples go, and how the writer batches and buffers them."""

    dsn: str = ""  # empty: the embedded server in data_dir (when `embedded`)
    embedded: bool = True
    open_parent_dirs: bool = False
    timescale: TimescaleMode = TimescaleMode.AUTO
    batch_rows: PositiveInt = 5000
    flush_interval_ms: PositiveInt = 500
    memory_rows: PositiveInt = 200_000
    spill_dir: str = ""  # empty: <data_dir>/spill
    connect_timeout_s: PositiveFloat = 5.0
    backoff_initial_s: PositiveFloat = 0.2
    backoff_max_s: PositiveFloat = 10.0
    snapshot_every_s: PositiveFloat = 60.0
    snapshot_depth: PositiveInt = 20
    evidence_window_s: Annotated[float, Meta(ge=0)] = 120.0  # 0: no evidence snapshots
    evidence_every_s: PositiveFloat = 5.0
    # the raw frames of a firing alert's venue (its book's, when the venue multiplexes),
    # from this long before it fired to this long after; both 0: no raw frames kept
    evidence_frames_before_s: Annotated[float, Meta(ge=0, le=3600)] = 30.0
    evidence_frames_after_s: Annotated[float, Meta(ge=0, le=3600)] = 10.0
    evidence_frames_max_bytes: PositiveInt = 8_000_000  # per alert and venue (oldest cut)
    frame_ring_max_bytes: PositiveInt = 32_000_000  # recent frames kept in memory per venue
    frame_ring_max_frames: PositiveInt = 500_000

    @property
    def evidence_frames(self) -> bool:
        """Whether firing alerts keep the raw frames around them."""
        return self.evidence_frames_before_s > 0 or self.evidence_frames_after_s > 0

    compress_after_days: PositiveFloat = 2.0
    retention_days: Annotated[float, Meta(ge=0)] = 30.0  # 0 keeps everything

    @property
    def enabled(self) -> bool:
        """Whether anything is stored: a DSN, or the embedded server."""
        return bool(self.dsn) or self.embedded


class ApiSettings(Struct, frozen=True, forbid_unknown_fields=True):
    """The HTTP API and the page (``liqmon run`` and ``liqmon serve``)."""

    enabled: bool = True
    listen: Listen = "127.0.0.1:8080"
    # true: GET endpoints answer without a token; writes always need one
    open_reads: bool = True
    # origins allowed by CORS; empty: CORS off (no Access-Control-* headers)
    cors_origins: tuple[str, ...] = ()
    # live push: messages queued per client before it counts as too slow and is dropped
    ws_queue: PositiveInt = 256
    ws_max_clients: PositiveInt = 1000
    # the largest page of any list, and the most buckets one history query may return
    max_limit: PositiveInt = 10_000
    max_buckets: PositiveInt = 100_000

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host or "127.0.0.1", int(port)


class Settings(Struct, frozen=True, forbid_unknown_fields=True):
    """All settings, as returned by `load_settings`."""

    monitor: MonitorSettings
    metrics: MetricsSettings
    fx: FxSettings
    connection: ConnectionSettings
    venues: dict[Venue, VenueSettings]
    database: DatabaseSettings = DatabaseSettings()
    api: ApiSettings = ApiSettings()
    analytics: AnalyticsSettings = AnalyticsSettings()
    alerts: AlertsSettings = AlertsSettings()
    subscriptions: tuple[SubscriptionSpec, ...] = ()

    def enabled_venues(self) -> dict[Venue, VenueSettings]:
        """The venues with ``enabled = true``, in configuration order."""
        return {venue: table for venue, table in self.venues.items() if table.enabled}


def shipped_config_dir() -> Path:
    """The configuration shipped with liqmon: ``default.toml``, ``sim.toml``, ``instruments/``.

    In a checkout (or an editable install) that is the repository's ``config/``; an
    installed liqmon reads the same files as the package data ``monitor.config``.
    """
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "config").is_dir():
        return checkout / "config"
    # files() of a package without __init__.py is a MultiplexedPath; joinpath() gives a Path
    located = importlib.resources.files("monitor.config").joinpath("default.toml")
    if not isinstance(located, Path):
        raise ConfigError(str(located), "(file)", "liqmon must be installed as files, not zipped")
    return located.parent


def resolve_config_path(path: Path) -> Path:
    """``path`` as given; when it does not exist and names a shipped file (``sim.toml``,
    ``config/sim.toml``), the shipped copy, so ``--config config/sim.toml`` works from any
    directory."""
    if path.exists() or path.is_absolute() or path.parent not in (Path(), Path("config")):
        return path
    shipped = shipped_config_dir() / path.name
    return shipped if shipped.is_file() else path


DEFAULT_CONFIG: Final = shipped_config_dir() / "default.toml"
ENV_PREFIX: Final = "LIQMON_"
ENV_SEPARATOR: Final = "__"


class _Allowed(NamedTuple):
    values: Container[int]
    description: str


# REST snapshot depths each venue accepts (from the venue's API documentation).
_SNAPSHOT_LIMITS: Final[dict[Venue, _Allowed]] = {
    Venue.BINANCE: _Allowed(range(1, 5001), "an integer from 1 to 5000"),
    Venue.BINANCE_FUTURES: _Allowed(
        frozenset({5, 10, 20, 50, 100, 500, 1000}), "one of 5, 10, 20, 50, 100, 500, 1000"
    ),
}

_SCHEMA: Final = mi.type_info(Settings)
_VENUE_VALUES: Final = frozenset(venue.value for venue in Venue)
_VENUE_IDS: Final = ", ".join(venue.value for venue in Venue)
_TOML_POSITION = re.compile(
    r"\s*\(at (line (?P<line>\d+), column (?P<column>\d+)|end of document)\)$"
)
_MSGSPEC_ERROR = re.compile(
    r"^(?P<problem>.*?)(?: - at (?:`key` in )?`(?P<path>\$[^`]*)`)?$", re.DOTALL
)
_MSGSPEC_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+|\.\.\.)\]")
_NAMED_FIELD = re.compile(
    r"^Object (?P<what>contains unknown|missing required) field `(?P<name>[^`]+)`$"
)

_Key = tuple[str | int, ...]
_T = TypeVar("_T")


def load_settings(paths: Sequence[Path] = (), env: Mapping[str, str] | None = None) -> Settings:
    """Load config/default.toml, merge `paths` over it in order, apply overrides, validate.

    A relative path that does not exist but names a shipped file (``config/sim.toml``) is
    read from the shipped configuration (see `resolve_config_path`).

    env: the environment to read ``LIQMON_*__*`` overrides from; ``None`` means os.environ.
    Raises ConfigError naming the file or variable, the dotted key and the problem.
    """
    layers = _Layers(str(DEFAULT_CONFIG))
    for path in (DEFAULT_CONFIG, *(resolve_config_path(Path(p)) for p in paths)):
        layers.merge(_read_toml(path), str(path))
    for source, table in _environment_overrides(os.environ if env is None else env):
        layers.merge(table, source)
    return _validate(layers)


class _Layers:
    """The merged tables, and for every key the source (file or variable) that set it last."""

    def __init__(self, fallback_source: str) -> None:
        self.data: dict[str, Any] = {}
        self._origins: dict[_Key, str] = {}
        self._fallback_source = fallback_source

    def merge(self, table: Mapping[str, Any], source: str) -> None:
        self._merge(self.data, table, source, ())

    def _merge(
        self, into: dict[str, Any], table: Mapping[str, Any], source: str, prefix: _Key
    ) -> None:
        for name, value in table.items():
            key = (*prefix, name)
            self._origins[key] = source
            if isinstance(value, Mapping):
                if not isinstance(into.get(name), dict):
                    into[name] = {}
                self._merge(into[name], value, source, key)
            else:
                into[name] = value

    def value_at(self, key: _Key) -> Any:
        value: Any = self.data
        for part in key:
            value = value[part]
        return value

    def source_of(self, key: _Key) -> str:
        # The deepest key that was set: `venues.okx` for a key missing from that table.
        for end in range(len(key), 0, -1):
            source = self._origins.get(key[:end])
            if source is not None:
                return source
        return self._fallback_source

    def error(self, key: _Key, problem: str) -> ConfigError:
        return ConfigError(self.source_of(key), _dotted(key), problem)


def _dotted(key: _Key) -> str:
    text = ""
    for part in key:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part.startswith("["):
            text += part
        else:
            text += f".{part}" if text else part
    return text or "(top level)"


def _read_toml(path: Path) -> dict[str, Any]:
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, "(file)", "no such file") from None
    except OSError as exc:
        raise ConfigError(source, "(file)", f"cannot read: {exc.strerror or exc}") from exc
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(source, f"byte {exc.start}", "not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_POSITION.search(message)
        if match is None:
            where = "(file)"
        elif match["line"] is None:
            where = "end of file"
        else:
            where = f"line {match['line']}, column {match['column']}"
        reason = message[: match.start()] if match else message
        raise ConfigError(source, where, f"invalid TOML: {reason}") from None


def _environment_overrides(env: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    overrides = []
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX):
            continue
        path = variable.removeprefix(ENV_PREFIX)
        if ENV_SEPARATOR not in path:
            continue
        source = f"environment variable {variable}"
        key = tuple(part.lower() for part in path.split(ENV_SEPARATOR))
        target = _env_target(key, source)
        try:
            value = _parse_env_value(env[variable], target)
        except ValueError as exc:
            raise ConfigError(source, _dotted(key), f"{exc}, got {env[variable]!r}") from None
        table: Any = value
        for part in reversed(key):
            table = {part: table}
        overrides.append((source, table))
    return overrides


def _env_target(key: tuple[str, ...], source: str) -> mi.Type:
    target: mi.Type = _SCHEMA
    for depth, part in enumerate(key):
        here = key[: depth + 1]
        if isinstance(target, mi.StructType):
            fields = {field.encode_name: field.type for field in target.fields}
            if part not in fields:
                raise ConfigError(
                    source, _dotted(here), f"unknown key; expected one of {', '.join(fields)}"
                )
            target = fields[part]
        elif isinstance(target, mi.DictType):
            if target.key_type == mi.EnumType(Venue) and part not in _VENUE_VALUES:
                raise ConfigError(
                    source, _dotted(here), f"unknown venue; expected one of {_VENUE_IDS}"
                )
            target = target.value_type
        else:
            raise ConfigError(source, _dotted(here), f"{_dotted(key[:depth])} is not a table")
    if isinstance(target, mi.StructType | mi.DictType):
        raise ConfigError(source, _dotted(key), "is a table: name one of its keys after another __")
    return target


def _parse_env_value(text: str, target: mi.Type) -> Any:
    if isinstance(target, mi.UnionType):
        members = [member for member in target.types if not isinstance(member, mi.NoneType)]
        if len(members) < len(target.types) and not text.strip():
            return None
        if len(members) != 1:
            raise ValueError("this key cannot be set from the environment")
        return _parse_env_value(text, members[0])
    if isinstance(target, mi.ListType | mi.VarTupleType):
        items = [item.strip() for item in text.split(",")]
        if items == [""]:
            return []
        try:
            return [_parse_scalar(item, target.item_type) for item in items]
        except ValueError as exc:
            raise ValueError(f"{exc} in each comma-separated item") from None
    return _parse_scalar(text.strip(), target)


_BOOL_WORDS: Final = {"true": True, "1": True, "false": False, "0": False}
_SCALAR_PARSERS: Final[dict[type[mi.Type], tuple[Callable[[str], Any], str]]] = {
    mi.BoolType: (lambda text: _BOOL_WORDS[text.lower()], "true, false, 1 or 0"),
    mi.IntType: (int, "an integer"),
    mi.FloatType: (float, "a number"),
    mi.StrType: (str, "a string"),
    mi.EnumType: (str, "a string"),  # the value itself is checked by msgspec, like a file's
}


def _parse_scalar(text: str, target: mi.Type) -> Any:
    parser = _SCALAR_PARSERS.get(type(target))
    if parser is None:
        raise ValueError("this key cannot be set from the environment")
    parse, expected = parser
    try:
        return parse(text)
    except (KeyError, ValueError):
        raise ValueError(f"expected {expected}") from None


def _validate(layers: _Layers) -> Settings:
    venues = layers.data.get("venues")
    if isinstance(venues, dict):
        # One venue at a time: msgspec reports a bad value inside a dict as `$.venues[...]`,
        # without the venue's name.
        for name, table in venues.items():
            if name not in _VENUE_VALUES:
                raise layers.error(("venues", name), f"unknown venue; expected one of {_VENUE_IDS}")
            _convert(table, VenueSettings, ("venues", name), layers)
    settings = _convert(layers.data, Settings, (), layers)
    _check_semantics(settings, layers)
    return settings


def _convert(obj: Any, target: type[_T], prefix: _Key, layers: _Layers) -> _T:
    try:
        return msgspec.convert(obj, target)
    except msgspec.ValidationError as exc:
        key, problem = _explain(
            str(exc), mi.type_info(target), lambda key: layers.value_at((*prefix, *key))
        )
        raise layers.error((*prefix, *key), problem) from exc


def _explain(message: str, schema: mi.Type, value_at: Callable[[_Key], Any]) -> tuple[_Key, str]:
    """Turn msgspec's "Expected `int`, got `str` - at `$.a.b`" into a key and a problem."""
    match = _MSGSPEC_ERROR.match(message)
    if match is None:  # pragma: no cover - the pattern matches any text
        return (), message
    key: list[str | int] = []
    for part in _MSGSPEC_PATH_PART.finditer(match["path"] or "$"):
        name, index = part.groups()
        if name is not None:
            key.append(name)
        else:
            key.append(int(index) if index.isdigit() else f"[{index}]")
    problem = match["problem"].replace("`object`", "`table`")
    target = _schema_at(schema, key)
    named = _NAMED_FIELD.match(problem)
    if named is not None:
        key.append(named["name"])
        if named["what"] == "missing required":
            problem = "missing required key"
        elif isinstance(target, mi.StructType):
            expected = ", ".join(field.encode_name for field in target.fields)
            problem = f"unknown key; expected one of {expected}"
        else:
            problem = "unknown key"
    elif isinstance(target, mi.EnumType):
        problem += f"; expected one of {', '.join(member.value for member in target.cls)}"
    elif (
        isinstance(target, mi.StrType)
        and target.pattern in _PATTERN_MEANINGS
        and problem.startswith("Expected `str` matching")
    ):
        problem = f"expected {_PATTERN_MEANINGS[target.pattern]}, got {value_at(tuple(key))!r}"
    return tuple(key), problem


def _schema_at(schema: mi.Type, key: list[str | int]) -> mi.Type | None:
    target: mi.Type | None = schema
    for part in key:
        target = _without_none(target)
        if isinstance(target, mi.StructType):
            target = next((f.type for f in target.fields if f.encode_name == part), None)
        elif isinstance(target, mi.DictType):
            target = target.value_type
        elif isinstance(target, mi.ListType | mi.VarTupleType):
            target = target.item_type
        else:
            return None
    return _without_none(target)


def _without_none(target: mi.Type | None) -> mi.Type | None:
    if isinstance(target, mi.UnionType):
        members = [member for member in target.types if not isinstance(member, mi.NoneType)]
        if len(members) == 1:
            return members[0]
    return target


def _check_semantics(settings: Settings, layers: _Layers) -> None:
    bands = settings.metrics.depth_bands_pct
    if any(later <= earlier for earlier, later in itertools.pairwise(bands)):
        raise layers.error(
            ("metrics", "depth_bands_pct"), f"expected strictly increasing bands, got {list(bands)}"
        )
    connection = settings.connection
    if connection.backoff_max_s < connection.backoff_initial_s:
        raise layers.error(
            ("connection", "backoff_max_s"),
            f"expected at least backoff_initial_s ({connection.backoff_initial_s}), "
            f"got {connection.backoff_max_s}",
        )
    for venue, table in settings.venues.items():
        _check_venue(venue, table, layers)
    database = settings.database
    if database.backoff_max_s < database.backoff_initial_s:
        raise layers.error(
            ("database", "backoff_max_s"),
            f"expected at least backoff_initial_s ({database.backoff_initial_s}), "
            f"got {database.backoff_max_s}",
        )
    if database.memory_rows < database.batch_rows:
        raise layers.error(
            ("database", "memory_rows"),
            f"expected at least batch_rows ({database.batch_rows}), got {database.memory_rows}",
        )
    port = settings.api.host_port[1]
    if not 0 < port < 65536:
        raise layers.error(("api", "listen"), f"expected a port from 1 to 65535, got {port}")
    _check_analytics(settings, layers)
    for index, key, problem in check_subscriptions(
        settings.subscriptions, settings.alerts.allow_private_urls
    ):
        raise layers.error(("subscriptions", index, key), problem)


def _check_analytics(settings: Settings, layers: _Layers) -> None:
    analytics = settings.analytics
    n_bands = len(settings.metrics.depth_bands_pct)
    if analytics.depth_band_weights and len(analytics.depth_band_weights) != n_bands:
        raise layers.error(
            ("analytics", "depth_band_weights"),
            f"expected one weight per depth band ({n_bands}), "
            f"got {len(analytics.depth_band_weights)}",
        )
    total = sum(msgspec.structs.astuple(analytics.weights))
    if abs(total - 1.0) > 1e-6:
        raise layers.error(
            ("analytics", "weights"), f"expected weights summing to 1, got {total:g}"
        )
    for level in range(3):
        if analytics.exit_points[level] >= analytics.enter_points[level]:
            raise layers.error(
                ("analytics", "exit_points"),
                f"expected each exit level below its enter level "
                f"{list(analytics.enter_points)}, got {list(analytics.exit_points)}",
            )
    if list(analytics.enter_points) != sorted(analytics.enter_points):
        raise layers.error(
            ("analytics", "enter_points"),
            f"expected increasing levels, got {list(analytics.enter_points)}",
        )
    for index, peg in enumerate(analytics.pegs):
        if peg.alert_bps < peg.warn_bps:
            raise layers.error(
                ("analytics", "pegs", index, "alert_bps"),
                f"expected at least warn_bps ({peg.warn_bps}), got {peg.alert_bps}",
            )


# Venues whose symbols are case-sensitive names (Hyperliquid: "kPEPE", "@107").
_MIXED_CASE_SYMBOLS: Final = frozenset({Venue.HYPERLIQUID})


def _check_venue(venue: Venue, table: VenueSettings, layers: _Layers) -> None:
    prefix = ("venues", venue.value)
    allowed = _SNAPSHOT_LIMITS.get(venue)
    if allowed is not None and table.snapshot_limit not in allowed.values:
        raise layers.error(
            (*prefix, "snapshot_limit"),
            f"expected {allowed.description} for {venue.value}, got {table.snapshot_limit}",
        )
    start = table.start_snapshot_limit
    if start and allowed is not None and start not in allowed.values:
        raise layers.error(
            (*prefix, "start_snapshot_limit"),
            f"expected 0 or {allowed.description} for {venue.value}, got {start}",
        )
    if not table.enabled:
        return
    if not table.symbols:
        raise layers.error((*prefix, "symbols"), "an enabled venue needs at least one symbol")
    seen: set[str] = set()
    for index, symbol in enumerate(table.symbols):
        upper = venue not in _MIXED_CASE_SYMBOLS
        if not symbol or (upper and symbol != symbol.upper()) or any(c.isspace() for c in symbol):
            case = "upper-case " if upper else ""
            raise layers.error(
                (*prefix, "symbols", index),
                f"expected a non-empty {case}symbol without spaces, got {symbol!r}",
            )
        if symbol in seen:
            raise layers.error((*prefix, "symbols", index), f"{symbol!r} is listed twice")
        seen.add(symbol)
