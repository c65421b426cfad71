"""The deployed workload of the end-to-end tests: mirrord's ``sqs-forwarder``, as a process.

    ECHO_PAIRS='{"SOURCE_VAR": "<echo queue url>", ...}' python echo_app.py

For each ``SOURCE_VAR`` it reads the queue (a name or a URL) from its own env var, as an
application does, long-polls it and forwards every message (body and attributes; on a
FIFO queue with the same group, one at a time, so the order is kept) to the echo queue,
then deletes it. The endpoint comes from ``PYMIRROR_SQS__ENDPOINT_URL`` and
``PYMIRROR_SQS__REGION``. SIGTERM stops it (exit 0) between two polls; a message in hand
is forwarded and deleted first. It prints ``reading <queue>`` once per queue it reads.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from splitter.sqs.client import SqsClient, SqsEndpoint, connect


async def forward(sqs: SqsClient, source: str, echo: str, stop: asyncio.Event) -> None:
    url = await sqs.queue_url(source)
    print(f"reading {url}", flush=True)
    while not stop.is_set():
        for message in await sqs.receive(url, max_messages=10, wait_seconds=1):
            entry: dict[str, Any] = {
                "Id": "0",
                "MessageBody": message["Body"],
                "MessageAttributes": message.get("MessageAttributes") or {},
            }
            if echo.endswith(".fifo"):
                system = message.get("Attributes") or {}
                entry["MessageGroupId"] = system.get("MessageGroupId", "echo")
                entry["MessageDeduplicationId"] = message["MessageId"]
            result = await sqs.send_batch(echo, [entry])
            if result.failed:
                raise RuntimeError(f"forwarding to {echo} failed: {result.failed}")
            await sqs.delete_batch(url, [("0", message["ReceiptHandle"])])


async def main() -> None:
    pairs: dict[str, str] = json.loads(os.environ["ECHO_PAIRS"])
    endpoint = SqsEndpoint(
        os.environ["PYMIRROR_SQS__ENDPOINT_URL"],
        os.environ.get("PYMIRROR_SQS__REGION", "us-east-1"),
        "test",
        "test",
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with connect(endpoint) as sqs:
        await asyncio.gather(
            *(forward(sqs, os.environ[var], echo, stop) for var, echo in pairs.items())
        )


if __name__ == "__main__":
    asyncio.run(main())
