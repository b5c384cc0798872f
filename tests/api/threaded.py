"""The API stack in a thread of its own, for synchronous clients (schemathesis, Playwright)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.api.conftest import Stack, api_stack


@contextlib.contextmanager
def threaded_stack(tmp_path: Path, **options: Any) -> Iterator[tuple[Stack, Callable[..., Any]]]:
    """Yields the stack and ``call(fn, *args)``: run ``fn`` (sync or async) on its loop."""
    ready = threading.Event()
    box: dict[str, Any] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        box["stop"], box["loop"] = stop, loop
        try:
            async with api_stack(tmp_path, **options) as stack:
                box["stack"] = stack
                ready.set()
                await stop.wait()
        except BaseException as exc:
            box["error"] = exc
            ready.set()
            raise

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    assert ready.wait(60.0), "the API stack did not start within 60 s"
    if "error" in box:
        raise box["error"]

    def call(fn: Callable[..., Any], *args: Any) -> Any:
        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), box["loop"]).result(30.0)

    try:
        yield box["stack"], call
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        thread.join(30.0)
