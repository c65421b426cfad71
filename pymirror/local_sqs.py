"""moto's SQS server, made safe for concurrent long polls.

moto picks the messages of a ``ReceiveMessage`` call without a lock: two
receives in two server threads can both see one message visible and both
return it, so a message is delivered twice although nobody let its visibility
timeout lapse (measured: 1-2 duplicates per 2,000 messages with 8 concurrent
receivers on a quiet machine, many more on a busy one). Real SQS hands one
receive's messages to nobody else until their visibility timeout ends.

:func:`serialize_receives` fixes that in-process: each pick runs under one
lock, and the long-poll wait happens outside it, so concurrent receivers still
wait concurrently. The sandbox, the embedded demo and the test suite all run
moto through this module (``python -m pymirror.local_sqs -H HOST -p PORT``).

:func:`retention_check_in_constant_time` fixes moto's cost per received message: to
check a message's retention period moto builds every attribute of its queue,
``ApproximateNumberOfMessages*`` among them, each a scan of the whole queue, three
times over. A receive was thus quadratic in the queue's length (py-spy: a server at
100 % CPU there, 8 messages/s on a 1,000-message backlog); now it reads the one
attribute it needs.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

_lock = threading.Lock()
_BLOCKED_PAUSE = 0.05  # visible messages exist but a FIFO group is busy: look again soon


def serialize_receives() -> None:
    """Patch moto's SQS backend so one message goes to one receive at a time (idempotent)."""
    from moto.sqs.models import SQSBackend

    original = SQSBackend.receive_message
    if getattr(original, "_pymirror_serialized", False):
        return

    def receive_message(
        self: Any,
        queue_name: str,
        count: int,
        wait_seconds_timeout: int,
        visibility_timeout: int,
        message_attribute_names: list[str] | None = None,
    ) -> list[Any]:
        deadline = time.monotonic() + wait_seconds_timeout
        while True:
            with _lock:
                result: list[Any] = original(
                    self, queue_name, count, 0, visibility_timeout, message_attribute_names
                )
            remaining = deadline - time.monotonic()
            if result or remaining <= 0:
                return result
            queue = self.get_queue(queue_name)
            if queue.messages:
                time.sleep(min(remaining, _BLOCKED_PAUSE))
            else:
                queue.wait_for_messages(min(remaining, 1.0))

    receive_message._pymirror_serialized = True  # type: ignore[attr-defined]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]


def retention_check_in_constant_time() -> None:
    """Patch moto's retention check to read the queue's retention period alone (idempotent)."""
    from moto.core.utils import unix_time
    from moto.sqs.models import Message, SQSBackend

    if getattr(SQSBackend.is_message_valid_based_on_retention_period, "_pymirror_fast", False):
        return

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Message
    ) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > unix_time())  # type: ignore[operator]

    is_message_valid_based_on_retention_period._pymirror_fast = True  # type: ignore[attr-defined]
    SQSBackend.is_message_valid_based_on_retention_period = (  # type: ignore[method-assign]
        is_message_valid_based_on_retention_period
    )


def patch_moto() -> None:
    """Both fixes above, in this process (idempotent)."""
    serialize_receives()
    retention_check_in_constant_time()


def main(argv: list[str] | None = None) -> None:
    """moto's server command line (``-H HOST -p PORT ...``), with :func:`patch_moto`."""
    from moto.server import main as moto_main

    patch_moto()
    moto_main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
