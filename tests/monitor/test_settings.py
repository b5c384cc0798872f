"""Settings: layering of default, user files and environment, and the errors users see."""

from __future__ import annotations

import textwrap
from pathlib import Path

import msgspec
import pytest

from monitor.domain import Venue
from monitor.errors import ConfigError
from monitor.log import LogFormat, LogLevel
from monitor.settings import DEFAULT_CONFIG, Settings, load_settings

SPOT_SYMBOLS = (
    "BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "DOGEUSDT",
    "BTCUSDC", "ETHUSDC", "USDCUSDT",
)  # fmt: skip
PERP_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT", "BNBUSDT", "DOGEUSDT")


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load_error(paths: list[Path] | None = None, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(paths or [], env=env or {})
    return info.value


class TestDefaults:
    def test_defaults_load_and_validate(self) -> None:
        settings = load_settings(env={})

        assert settings.monitor.tick_ms == 1000
        assert settings.monitor.book_capacity == 2048
        assert settings.monitor.data_dir == "~/.liqmon"  # data_path: see the root test below
        assert settings.monitor.log_level is LogLevel.INFO
        assert settings.monitor.log_format is LogFormat.AUTO
        assert settings.metrics.depth_bands_pct == (0.1, 0.5, 1.0, 2.0)
        assert settings.metrics.slippage_notionals_usd == (1e4, 1e5, 1e6)
        assert "USDT" in settings.fx.usd_stables
        assert settings.connection.receive_timeout_s == 30.0
        assert settings.connection.healthy_after_s == 60.0
        assert list(settings.venues) == list(Venue)  # every venue has a default table
        assert all(table.enabled for table in settings.venues.values())

    def test_default_venues_carry_their_streams_and_symbols(self) -> None:
        venues = load_settings(env={}).venues

        spot, perp = venues[Venue.BINANCE], venues[Venue.BINANCE_FUTURES]
        assert spot.symbols == SPOT_SYMBOLS
        assert spot.market_ws_url is None
        assert spot.mark_price_stream is None
        assert perp.symbols == PERP_SYMBOLS
        assert perp.ws_url == "wss://fstream.binance.com/public/stream"
        assert perp.market_ws_url == "wss://fstream.binance.com/market/stream"
        assert perp.mark_price_stream == "markPrice@1s"

    def test_enabled_venues_lists_only_enabled_ones(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[venues.binance]\nenabled = false\n")

        enabled = list(load_settings([user], env={}).enabled_venues())
        assert enabled == [v for v in Venue if v != Venue.BINANCE]

    def test_default_file_given_explicitly_changes_nothing(self) -> None:
        assert load_settings([DEFAULT_CONFIG], env={}) == load_settings(env={})

    def test_settings_are_frozen(self) -> None:
        settings = load_settings(env={})

        with pytest.raises(AttributeError):
            settings.monitor.tick_ms = 5  # type: ignore[misc]

    def test_settings_round_trip_through_msgspec(self) -> None:
        settings = load_settings(env={})

        assert msgspec.convert(msgspec.to_builtins(settings), Settings) == settings


class TestFileLayers:
    def test_later_file_wins_and_tables_merge_key_by_key(self, tmp_path: Path) -> None:
        first = write(
            tmp_path,
            "first.toml",
            """
            [monitor]
            tick_ms = 500
            log_format = "console"
            [venues.binance]
            symbols = ["BTCUSDT", "ETHUSDT"]
            """,
        )
        second = write(tmp_path, "second.toml", "[monitor]\ntick_ms = 250\n")

        settings = load_settings([first, second], env={})

        assert settings.monitor.tick_ms == 250
        assert settings.monitor.log_format is LogFormat.CONSOLE
        assert settings.monitor.book_capacity == 2048
        assert settings.venues[Venue.BINANCE].symbols == ("BTCUSDT", "ETHUSDT")
        assert settings.venues[Venue.BINANCE].snapshot_limit == 1000
        assert settings.venues[Venue.BINANCE_FUTURES].symbols == PERP_SYMBOLS

    def test_arrays_are_replaced_not_appended(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[metrics]\ndepth_bands_pct = [0.25, 5]\n")

        assert load_settings([user], env={}).metrics.depth_bands_pct == (0.25, 5.0)

    def test_a_new_venue_table_is_accepted(self, tmp_path: Path) -> None:
        user = write(
            tmp_path,
            "okx.toml",
            """
            [venues.okx]
            enabled = true
            ws_url = "wss://ws.okx.com:8443/ws/v5/public"
            rest_url = "https://www.okx.com"
            depth_stream = "books"
            snapshot_limit = 400
            symbols = ["BTC-USDT", "BTC-USDT-SWAP"]
            """,
        )

        okx = load_settings([user], env={}).venues[Venue.OKX]

        assert okx.symbols == ("BTC-USDT", "BTC-USDT-SWAP")
        assert okx.market_ws_url is None


class TestEnvironment:
    def test_env_overrides_int_bool_and_lists(self) -> None:
        settings = load_settings(
            env={
                "LIQMON_MONITOR__TICK_MS": "500",
                "LIQMON_VENUES__BINANCE__ENABLED": "false",
                "LIQMON_VENUES__BINANCE_FUTURES__SYMBOLS": "BTCUSDT, ETHUSDT",
                "LIQMON_METRICS__DEPTH_BANDS_PCT": "0.25,1,5",
                "LIQMON_CONNECTION__BACKOFF_MAX_S": "120",
            }
        )

        assert settings.monitor.tick_ms == 500
        assert settings.venues[Venue.BINANCE].enabled is False
        assert settings.venues[Venue.BINANCE_FUTURES].symbols == ("BTCUSDT", "ETHUSDT")
        assert settings.metrics.depth_bands_pct == (0.25, 1.0, 5.0)
        assert settings.connection.backoff_max_s == 120.0
        assert Venue.BINANCE not in settings.enabled_venues()
        assert Venue.BINANCE_FUTURES in settings.enabled_venues()

    @pytest.mark.parametrize(("text", "expected"), [("true", True), ("0", False), ("TRUE", True)])
    def test_env_bool_accepts_true_false_one_zero(self, text: str, expected: bool) -> None:
        env = {"LIQMON_VENUES__BINANCE__ENABLED": text}

        assert load_settings(env=env).venues[Venue.BINANCE].enabled is expected

    def test_env_wins_over_files(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[monitor]\ntick_ms = 250\n")

        settings = load_settings([user], env={"LIQMON_MONITOR__TICK_MS": "750"})

        assert settings.monitor.tick_ms == 750

    def test_empty_env_value_clears_an_optional_key(self) -> None:
        env = {"LIQMON_VENUES__BINANCE_FUTURES__MARK_PRICE_STREAM": ""}

        assert load_settings(env=env).venues[Venue.BINANCE_FUTURES].mark_price_stream is None

    def test_variables_that_are_not_overrides_are_ignored(self) -> None:
        env = {"LIQMON_TELEGRAM_BOT_TOKEN": "123:abc", "PATH": "/bin", "MONITOR__TICK_MS": "x"}

        assert load_settings(env=env) == load_settings(env={})

    def test_os_environ_is_read_when_env_is_not_given(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("LIQMON_MONITOR__TICK_MS", "333")

        assert load_settings().monitor.tick_ms == 333


class TestErrors:
    def test_wrong_type_names_file_key_and_expected_type(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", '[venues.binance]\nsnapshot_limit = "1000"\n')

        error = load_error([user])

        assert error.source == str(user)
        assert error.key == "venues.binance.snapshot_limit"
        assert "Expected `int`, got `str`" in error.problem
        assert str(user) in str(error)

    def test_error_names_the_last_file_that_set_the_key(self, tmp_path: Path) -> None:
        bad = write(tmp_path, "bad.toml", '[monitor]\nbook_capacity = "big"\n')
        later = write(tmp_path, "later.toml", "[monitor]\ntick_ms = 500\n")

        error = load_error([bad, later])

        assert (error.source, error.key) == (str(bad), "monitor.book_capacity")

    def test_bad_array_item_is_named_with_its_index(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[metrics]\nslippage_notionals_usd = [1000.0, -5.0]\n")

        error = load_error([user])

        assert (error.source, error.key) == (str(user), "metrics.slippage_notionals_usd[1]")
        assert "> 0" in error.problem

    def test_unknown_key_is_named(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[monitor]\ntick_sm = 500\n")

        error = load_error([user])

        assert (error.source, error.key) == (str(user), "monitor.tick_sm")
        assert "unknown key" in error.problem
        assert "tick_ms" in error.problem

    def test_unknown_key_in_a_venue_is_named(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[venues.binance_futures]\nsymbol = []\n")

        error = load_error([user])

        assert (error.source, error.key) == (str(user), "venues.binance_futures.symbol")

    def test_unknown_section_is_named(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[monitr]\ntick_ms = 500\n")

        error = load_error([user])

        assert (error.source, error.key) == (str(user), "monitr")

    def test_unknown_venue_is_rejected(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[venues.binanse]\nenabled = false\n")

        error = load_error([user])

        assert (error.source, error.key) == (str(user), "venues.binanse")
        assert "unknown venue" in error.problem

    def test_a_venue_table_changes_only_the_keys_it_gives(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", '[venues.okx]\nenabled = true\nws_url = "wss://x"\n')

        okx = load_settings([user], env={}).venues[Venue.OKX]

        assert okx.ws_url == "wss://x"
        assert okx.rest_url == "https://www.okx.com" and okx.depth_stream == "books"

    def test_mixed_case_symbols_only_where_the_venue_spells_them_so(self, tmp_path: Path) -> None:
        ok = write(tmp_path, "ok.toml", '[venues.hyperliquid]\nsymbols = ["BTC", "kPEPE"]\n')
        assert load_settings([ok], env={}).venues[Venue.HYPERLIQUID].symbols == ("BTC", "kPEPE")
        bad = write(tmp_path, "bad.toml", '[venues.okx]\nsymbols = ["btc-usdt"]\n')
        error = load_error([bad])
        assert error.key == "venues.okx.symbols[0]" or error.key.startswith("venues.okx.symbols")
        assert "upper-case" in error.problem

    def test_bad_toml_names_file_and_line(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[monitor]\ntick_ms = 500\nlog_level = \n")

        error = load_error([user])

        assert error.source == str(user)
        assert error.key.startswith("line 3,")
        assert "invalid TOML" in error.problem

    def test_missing_file_is_a_config_error(self, tmp_path: Path) -> None:
        missing = tmp_path / "absent.toml"

        error = load_error([missing])

        assert error.source == str(missing)
        assert "no such file" in error.problem

    def test_unconvertible_env_value_names_the_variable(self) -> None:
        error = load_error(env={"LIQMON_MONITOR__TICK_MS": "fast"})

        assert error.source == "environment variable LIQMON_MONITOR__TICK_MS"
        assert error.key == "monitor.tick_ms"
        assert "expected an integer" in error.problem
        assert "'fast'" in error.problem

    @pytest.mark.parametrize(
        ("variable", "value"),
        [
            ("LIQMON_VENUES__BINANCE__ENABLED", "maybe"),
            ("LIQMON_METRICS__DEPTH_BANDS_PCT", "0.1,wide"),
            ("LIQMON_CONNECTION__CONNECT_TIMEOUT_S", "10s"),
        ],
    )
    def test_unconvertible_env_values_of_each_type_name_the_variable(
        self, variable: str, value: str
    ) -> None:
        error = load_error(env={variable: value})

        assert error.source == f"environment variable {variable}"

    def test_invalid_env_value_of_the_right_type_names_the_variable(self) -> None:
        error = load_error(env={"LIQMON_MONITOR__TICK_MS": "0"})

        assert (error.source, error.key) == (
            "environment variable LIQMON_MONITOR__TICK_MS",
            "monitor.tick_ms",
        )

    @pytest.mark.parametrize(
        ("variable", "key"),
        [
            ("LIQMON_MONITOR__TICKS", "monitor.ticks"),
            ("LIQMON_VENUES__FTX__ENABLED", "venues.ftx"),
            ("LIQMON_MONITOR__TICK_MS__X", "monitor.tick_ms.x"),
            ("LIQMON_VENUES__BINANCE", "venues.binance"),
        ],
    )
    def test_env_variable_for_an_unknown_key_or_a_table_is_rejected(
        self, variable: str, key: str
    ) -> None:
        error = load_error(env={variable: "1"})

        assert (error.source, error.key) == (f"environment variable {variable}", key)


class TestSemanticChecks:
    @pytest.mark.parametrize("limit", [0, 2000, 250, 5000])
    def test_invalid_snapshot_limit_for_binance_futures_is_rejected(
        self, tmp_path: Path, limit: int
    ) -> None:
        user = write(tmp_path, "user.toml", f"[venues.binance_futures]\nsnapshot_limit = {limit}\n")

        error = load_error([user])

        assert (error.source, error.key) == (str(user), "venues.binance_futures.snapshot_limit")

    @pytest.mark.parametrize("limit", [5, 500, 1000])
    def test_listed_snapshot_limits_for_binance_futures_are_accepted(self, limit: int) -> None:
        env = {"LIQMON_VENUES__BINANCE_FUTURES__SNAPSHOT_LIMIT": str(limit)}

        assert load_settings(env=env).venues[Venue.BINANCE_FUTURES].snapshot_limit == limit

    def test_binance_spot_snapshot_limit_is_checked_against_its_range(self) -> None:
        accepted = load_settings(env={"LIQMON_VENUES__BINANCE__SNAPSHOT_LIMIT": "5000"})
        error = load_error(env={"LIQMON_VENUES__BINANCE__SNAPSHOT_LIMIT": "5001"})

        assert accepted.venues[Venue.BINANCE].snapshot_limit == 5000
        assert error.key == "venues.binance.snapshot_limit"
        assert "1 to 5000" in error.problem

    @pytest.mark.parametrize("bands", ["[0.5, 0.5]", "[1.0, 0.5]", "[0.1, 2.0, 1.0]"])
    def test_non_increasing_depth_bands_are_rejected(self, tmp_path: Path, bands: str) -> None:
        user = write(tmp_path, "user.toml", f"[metrics]\ndepth_bands_pct = {bands}\n")

        error = load_error([user])

        assert (error.source, error.key) == (str(user), "metrics.depth_bands_pct")
        assert "strictly increasing" in error.problem

    @pytest.mark.parametrize(
        ("bands", "key"),
        [
            ("[0.0, 1.0]", "metrics.depth_bands_pct[0]"),
            ("[1.0, 10.5]", "metrics.depth_bands_pct[1]"),
            ("[]", "metrics.depth_bands_pct"),
        ],
    )
    def test_depth_bands_outside_zero_to_ten_percent_are_rejected(
        self, tmp_path: Path, bands: str, key: str
    ) -> None:
        user = write(tmp_path, "user.toml", f"[metrics]\ndepth_bands_pct = {bands}\n")

        assert load_error([user]).key == key

    @pytest.mark.parametrize(
        ("symbols", "key"),
        [
            ('["BTCUSDT", "ethusdt"]', "venues.binance.symbols[1]"),
            ('["BTC USDT"]', "venues.binance.symbols[0]"),
            ('[""]', "venues.binance.symbols[0]"),
            ('["BTCUSDT", "BTCUSDT"]', "venues.binance.symbols[1]"),
            ("[]", "venues.binance.symbols"),
        ],
    )
    def test_bad_symbols_of_an_enabled_venue_are_rejected(
        self, tmp_path: Path, symbols: str, key: str
    ) -> None:
        user = write(tmp_path, "user.toml", f"[venues.binance]\nsymbols = {symbols}\n")

        error = load_error([user])

        assert (error.source, error.key) == (str(user), key)

    def test_symbols_of_a_disabled_venue_are_not_checked(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", "[venues.binance]\nenabled = false\nsymbols = []\n")

        assert load_settings([user], env={}).venues[Venue.BINANCE].symbols == ()

    @pytest.mark.parametrize(
        ("line", "key", "expected"),
        [
            ('ws_url = "https://stream.binance.com"', "venues.binance.ws_url", "ws://"),
            ('rest_url = "wss://api.binance.com"', "venues.binance.rest_url", "https://"),
            ('market_ws_url = "stream.binance.com"', "venues.binance.market_ws_url", "wss://"),
        ],
    )
    def test_urls_with_the_wrong_scheme_are_rejected(
        self, tmp_path: Path, line: str, key: str, expected: str
    ) -> None:
        user = write(tmp_path, "user.toml", f"[venues.binance]\n{line}\n")

        error = load_error([user])

        assert (error.source, error.key) == (str(user), key)
        assert expected in error.problem
        assert line.split(" = ")[1].replace('"', "'") in error.problem

    def test_backoff_max_below_initial_is_rejected(self) -> None:
        error = load_error(env={"LIQMON_CONNECTION__BACKOFF_MAX_S": "0.5"})

        assert error.key == "connection.backoff_max_s"

    def test_unknown_log_level_is_rejected(self, tmp_path: Path) -> None:
        user = write(tmp_path, "user.toml", '[monitor]\nlog_level = "verbose"\n')

        error = load_error([user])

        assert (error.source, error.key) == (str(user), "monitor.log_level")
        assert "'verbose'" in error.problem
        assert "debug, info, warning, error" in error.problem

    def test_lower_case_stablecoin_is_rejected(self) -> None:
        error = load_error(env={"LIQMON_FX__USD_STABLES": "USDT,usdc"})

        assert error.key == "fx.usd_stables[1]"
        assert "upper-case currency code" in error.problem


def test_the_default_data_dir_of_root_is_var_lib_liqmon_and_an_explicit_one_is_kept() -> None:
    """The embedded PostgreSQL runs as a system user that cannot enter /root (0700)."""
    import os  # noqa: PLC0415

    from monitor.settings import ROOT_DATA_DIR, load_settings  # noqa: PLC0415

    default = load_settings([], env={}).monitor
    explicit = load_settings([], env={"LIQMON_MONITOR__DATA_DIR": "/tmp/x"}).monitor
    if os.geteuid() == 0:
        assert str(default.data_path) == ROOT_DATA_DIR
    else:
        assert default.data_path == Path("~/.liqmon").expanduser()
    assert str(explicit.data_path) == "/tmp/x"
