"""A dispatcher in its own process (the kill -9 tests): PostgreSQL outbox, webhook channel,
and the Telegram channel when the Bot API's base URL is given.

python -m tests.alerts.dispatcher_proc DSN [TELEGRAM_API_URL]
"""

from __future__ import annotations

import asyncio
import sys

from alerts.channels.base import Sender
from alerts.channels.telegram import TelegramSender
from alerts.channels.webhook import WebhookSender
from alerts.dispatcher import Dispatcher, DispatchPolicy
from alerts.pg_outbox import PgOutbox
from alerts.subscriptions import Channel


async def main(dsn: str, telegram_url: str | None) -> None:
    outbox = PgOutbox(dsn)
    policy = DispatchPolicy(
        retry_initial_s=0.02, retry_max_s=0.2, rate_per_s=1e4, target_rate_per_s=1e4, poll_s=0.05
    )
    senders: dict[Channel, Sender] = {Channel.WEBHOOK: WebhookSender(allow_private_urls=True)}
    if telegram_url:
        senders[Channel.TELEGRAM] = TelegramSender(api_url=telegram_url)
    dispatcher = Dispatcher(outbox, senders, policy)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await dispatcher.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
