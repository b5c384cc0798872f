"""A writer process for the crash tests: ``python -m tests.store.writer_proc DSN SPILL_DIR
[--ticks N --books B --batch R --memory R --close-timeout S]``.

Writes ``ticks`` synthetic samples of ``books`` books through a real StoreWriter (none:
only what a spill file left behind), prints one JSON line per acknowledged batch and the
counters at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from monitor.log import configure_logging
from monitor.store.writer import StoreWriter, WriterPolicy
from tests.store.samples import synthetic_sample


def say(line: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(line) + "\n")
    sys.stdout.flush()


async def main(args: argparse.Namespace) -> None:
    configure_logging("info", "json")  # logs to stderr: stdout carries the progress lines
    policy = WriterPolicy(
        batch_rows=args.batch,
        memory_rows=args.memory,
        flush_interval_s=0.01,
        connect_timeout_s=1.0,
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
    )
    writer = StoreWriter.for_dsn(args.dsn, Path(args.spill_dir), policy)
    say({"start": writer.counters.spill_pending})

    async def report() -> None:
        while True:
            await writer.batch_done.wait()
            say({"batch": writer.counters.batches})

    reporter = asyncio.create_task(report())
    writer.start()
    for tick in range(args.ticks):
        await writer.write(synthetic_sample(tick, args.books))
    await writer.close(timeout_s=args.close_timeout)
    reporter.cancel()
    say({"counters": writer.counters.as_dict()})


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("spill_dir")
    parser.add_argument("--ticks", type=int, default=0)
    parser.add_argument("--books", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--memory", type=int, default=500)
    parser.add_argument("--close-timeout", type=float, default=60.0)
    asyncio.run(main(parser.parse_args(sys.argv[1:])))
