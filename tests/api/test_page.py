"""The page in a real browser: Debian's chromium driven by Playwright, against a daemon fed
by the local exchange and storing into the suite's PostgreSQL. The table fills, the charts
draw, a state change appears on the timeline, the console stays clean; a screenshot is
saved as a test artifact (its path is printed)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from monitor.domain import Venue
from tests.api.threaded import threaded_stack
from tests.store.conftest import db_dsn, pg_server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.integration

ARTIFACTS = Path(
    os.environ.get("LIQMON_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts")
)


def chromium() -> str:
    """Debian's chromium (Playwright's own browser download does not work here)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    raise AssertionError("chromium is not installed: apt-get install -y chromium (.ci/run does)")


def test_page_in_a_browser(tmp_path: Path, db_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with threaded_stack(tmp_path, dsn=db_dsn) as (stack, call), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            problems: list[str] = []
            page.on(
                "console",
                lambda m: (
                    problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.goto(stack.url + "/")
            # the live table fills over the WebSocket: one table per asset, a row per book
            page.wait_for_function(
                "document.querySelectorAll('.asset-table tbody tr').length >= 6", timeout=20_000
            )
            assert page.locator(".asset-table").count() == 2
            assert "live" in page.inner_text("#conn")
            sol = page.locator('.asset-table[data-asset="SOL"] tbody tr')
            assert sol.count() == 3 and "$" in sol.first.inner_text()
            # the depth chart draws (a series per venue plus the score) once ticks arrive
            page.wait_for_function(
                "state.depthPlot && state.depthPlot.data[0].length >= 5 && state.depthPlot.series.length >= 5",
                timeout=20_000,
            )
            # the book's cumulative depth curve draws (live book: the "now" choice)
            page.wait_for_function(
                "state.bookPlot && state.bookPlot.data[0].length >= 10", timeout=20_000
            )
            # a state change: the exchange drops a venue's connection; its books resync
            # the venue goes quiet: its books go stale, then come back when it speaks again
            call(stack.sim.set_silent, Venue.COINBASE)
            page.wait_for_selector('#events li[data-kind="book_state"]', timeout=20_000)
            assert "coinbase" in page.inner_text("#events")
            page.wait_for_function(
                "document.querySelectorAll('.asset-table tbody tr.invalid').length === 0",
                timeout=20_000,
            )
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "page.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            with capsys.disabled():
                sys.stdout.write(f"\npage screenshot: {shot}\n")
            assert problems == [], problems
        finally:
            browser.close()
