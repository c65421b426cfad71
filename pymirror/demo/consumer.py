"""The demo's local consumer: what a developer's (or the deployed workload's) process does.

It is written with a client pymirror does not use itself (plain, synchronous ``boto3``;
pymirror uses aiobotocore) and imports nothing of pymirror, so the demo shows pymirror
splitting for an ordinary program. It reads its queue's name or URL from an environment
variable (``--sqs-var``): exactly what ``pymirror exec`` and the operator's env patch
change.

Everything it does goes into ``--records DIR``, as files the demo reads:

* ``NAME.PID.start``: ``{"pid", "sqs"}``, the queue it reads, written once it found it;
* ``NAME.PID.jsonl``: one line per message received, ``{"id", "via", "source"}``, written
  (and flushed) before the message is deleted;
* ``NAME.PID.exit``: written when it stops.

Control: the file ``NAME.pause`` makes it stop receiving (it acknowledges with
``NAME.PID.paused``), ``NAME.quit`` makes it exit 0; so does SIGTERM. Each stop waits
for the batch in hand to be recorded and acknowledged, so nothing is received twice.

Fault hook (tests only): ``PYMIRROR_DEMO_FAULT_DROP=NAME`` makes consumer NAME drop the
first message it receives: acknowledged, never recorded. The demo must then report it
lost and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

FAULT_DROP = "PYMIRROR_DEMO_FAULT_DROP"
#: A receive returns within this long when nothing is there, so control files and
#: signals are seen quickly.
POLL_SECONDS = 1


class Consumer:
    def __init__(self, name: str, records: Path) -> None:
        self.name = name
        self.records = records
        self.pid = os.getpid()
        self.stopping = threading.Event()
        self.out = (records / f"{name}.{self.pid}.jsonl").open("a", encoding="utf-8")
        self.drop_next = os.environ.get(FAULT_DROP) == name

    def path(self, suffix: str) -> Path:
        return self.records / f"{self.name}.{self.pid}.{suffix}"

    def write_whole(self, suffix: str, data: dict[str, Any]) -> None:
        """``data`` as the file ``NAME.PID.suffix``, written whole (by a rename)."""
        tmp = self.records / f".{self.name}.{self.pid}.{suffix}"
        tmp.write_text(json.dumps(data))
        tmp.rename(self.path(suffix))

    def paused(self) -> bool:
        if not (self.records / f"{self.name}.pause").exists():
            return False
        if not self.path("paused").exists():
            self.write_whole("paused", {"pid": self.pid})
        return True

    def should_stop(self) -> bool:
        if (self.records / f"{self.name}.quit").exists():
            self.stopping.set()
        return self.stopping.is_set()

    def record(self, message_id: str, via: str, source: str) -> None:
        if self.drop_next:
            self.drop_next = False
            return
        line = {"id": message_id, "via": via, "source": source}
        self.out.write(json.dumps(line) + "\n")
        self.out.flush()


def sqs_loop(consumer: Consumer, queue: str, on_ready: Callable[[], None]) -> None:
    """Receive, record, delete, until told to stop (signals land between receives)."""
    import boto3  # type: ignore[import-untyped]

    sqs = boto3.client("sqs")
    url = queue if queue.startswith("http") else sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    on_ready()
    while not consumer.should_stop():
        if consumer.paused():
            consumer.stopping.wait(0.1)
            continue
        try:
            answer = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=POLL_SECONDS,
                MessageAttributeNames=["All"],
            )
        except sqs.exceptions.QueueDoesNotExist:
            return  # the fallback, deleted once the workload was switched back
        for message in answer.get("Messages", []):
            body = json.loads(message["Body"])
            consumer.record(body["id"], "sqs", queue)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the pymirror demo's local SQS consumer")
    parser.add_argument("--name", required=True)
    parser.add_argument("--records", required=True, type=Path)
    parser.add_argument(
        "--sqs-var", required=True, help="env var holding the SQS queue's name or URL"
    )
    args = parser.parse_args(argv)
    consumer = Consumer(args.name, args.records)

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        consumer.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    queue = os.environ[args.sqs_var]
    failed = ""
    try:
        sqs_loop(
            consumer,
            queue,
            lambda: consumer.write_whole("start", {"pid": consumer.pid, "sqs": queue}),
        )
    except Exception as e:  # reported, then the process exits 1
        failed = repr(e)
        print(f"consumer {args.name}: {failed}", file=sys.stderr)
    consumer.write_whole("exit", {"pid": consumer.pid, "failed": failed})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
