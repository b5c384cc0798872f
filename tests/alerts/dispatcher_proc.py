"""A dispatcher in its own process (the kill -9 test): PostgreSQL outbox, webhook channel.

python -m tests.alerts.dispatcher_proc DSN
"""

from __future__ import annotations

import asyncio
import sys

from alerts.channels.webhook import WebhookSender
from alerts.dispatcher import Dispatcher, DispatchPolicy
from alerts.pg_outbox import PgOutbox
from alerts.subscriptions import Channel


async def main(dsn: str) -> None:
    outbox = PgOutbox(dsn)
    policy = DispatchPolicy(
        retry_initial_s=0.02, retry_max_s=0.2, rate_per_s=1e4, target_rate_per_s=1e4, poll_s=0.05
    )
    dispatcher = Dispatcher(
        outbox, {Channel.WEBHOOK: WebhookSender(allow_private_urls=True)}, policy
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await dispatcher.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
