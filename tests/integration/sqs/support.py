"""Helpers shared by the SQS split-worker integration tests (test_sqs_split, test_sqs_crash).

Messages carry their test id in the ``mid`` attribute (and in the body), so a
message found anywhere can be traced back to what was sent. Every wait here
is bounded and fails the test naming what it was waiting for: :func:`wait_moving`
for as long as measured progress continues (a busy machine is slow, not stuck),
:func:`wait_for` and :func:`drain` after a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splitter.errors import SqsQueueMissingError
from splitter.filters import FilterSpec, Mode, compile_filter
from splitter.naming import DEFAULT_SQS_QUEUE_FORMAT, NameFormat
from splitter.routing import SessionRoute
from splitter.sqs.client import Message, SqsClient, SqsEndpoint, connect
from splitter.sqs.queues import create_temporary_queue
from splitter.sqs.settings import SqsSettings
from splitter.sqs.split import SqsSplit
from splitter.sqs.worker import SqsSplitWorker
from tests.servers.process import REPO
from tests.servers.sqs import SqsEndpoint as ServerEndpoint

FALLBACK = "fallback"


@contextlib.asynccontextmanager
async def client_for(server: ServerEndpoint) -> AsyncIterator[SqsClient]:
    endpoint = SqsEndpoint(server.url, server.region, "test", "test")
    async with connect(endpoint) as client:
        yield client


FORMAT = NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs")


async def temporary(
    sqs: SqsClient, original: str, session: str | None = None, *, mode: Mode | None = None
) -> str:
    """A temporary queue like ``original`` made by pymirror: the fallback, or ``session``'s
    (tagged with ``mode`` if given); the split worker refuses any other."""
    made = await create_temporary_queue(
        sqs, original, FORMAT, fallback=session is None, session=session, mode=mode
    )
    return made.url


async def make_queue(sqs: SqsClient, name: str, **attributes: str) -> str:
    if name.endswith(".fifo"):
        attributes.setdefault("FifoQueue", "true")
    return await sqs.create_queue(name, attributes, {})


def route(
    session_id: str,
    sequence: int,
    destination: str,
    message_filter: Mapping[str, str] | None = None,
    *,
    jq: str | None = None,
    mode: Mode = "steal",
) -> SessionRoute:
    spec = FilterSpec(message_filter=dict(message_filter or {}), jq_filter=jq, mode=mode)
    return SessionRoute(session_id, sequence, compile_filter(spec), destination)


def attribute(value: str | int | bytes, data_type: str | None = None) -> dict[str, Any]:
    """A message attribute: ``str`` -> String, ``int`` -> Number, ``bytes`` -> Binary."""
    if isinstance(value, bytes):
        return {"DataType": data_type or "Binary", "BinaryValue": value}
    if isinstance(value, int):
        return {"DataType": data_type or "Number", "StringValue": str(value)}
    return {"DataType": data_type or "String", "StringValue": value}


@dataclass
class Outgoing:
    """One message a test sends; ``mid`` is its unique id."""

    mid: str
    attributes: dict[str, Any] = field(default_factory=dict)
    body: str | None = None
    group: str | None = None
    trace: str | None = None

    def entry(self, entry_id: str) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "Id": entry_id,
            "MessageBody": self.body if self.body is not None else f"body of {self.mid}",
            "MessageAttributes": {"mid": attribute(self.mid), **self.attributes},
        }
        if self.trace is not None:
            entry["MessageSystemAttributes"] = {
                "AWSTraceHeader": {"DataType": "String", "StringValue": self.trace}
            }
        if self.group is not None:
            entry["MessageGroupId"] = self.group
            entry["MessageDeduplicationId"] = self.mid
        return entry


async def send(sqs: SqsClient, url: str, messages: Sequence[Outgoing]) -> None:
    """Send in batches of 10, in order; every entry must succeed."""
    for start in range(0, len(messages), 10):
        chunk = messages[start : start + 10]
        result = await sqs.send_batch(url, [m.entry(str(i)) for i, m in enumerate(chunk)])
        assert not result.failed, f"sending to {url} failed: {result.failed}"


def mid_of(message: Message) -> str:
    return str(message["MessageAttributes"]["mid"]["StringValue"])


async def receive_some(sqs: SqsClient, url: str, wait: int = 1) -> list[Message]:
    """One receive that deletes what it got (the consumer of a destination)."""
    messages = await sqs.receive(url, max_messages=10, wait_seconds=wait)
    if messages:
        result = await sqs.delete_batch(
            url, [(str(i), m["ReceiptHandle"]) for i, m in enumerate(messages)]
        )
        assert not result.failed, f"deleting from {url} failed: {result.failed}"
    return messages


async def drain(
    sqs: SqsClient,
    queues: Mapping[str, str],
    *,
    expect: int,
    within: float = 30.0,
    quiet: float = 1.0,
) -> dict[str, list[Message]]:
    """Consume every queue (label -> URL), each by its own reader, until ``expect``
    messages came and then ``quiet`` seconds brought nothing more; fails once ``within``
    seconds passed without a message arriving (measured progress, not a total budget)."""
    readers = {label: Reader(url) for label, url in queues.items()}
    tasks = [asyncio.create_task(r.run(sqs)) for r in readers.values()]
    started = time.monotonic()
    try:
        while True:
            total = sum(len(r.messages) for r in readers.values())
            last = max((at for r in readers.values() for _mid, at in r.taken[-1:]), default=0.0)
            now = time.monotonic()
            if total >= expect and now - last >= quiet:
                break
            if now - max(last, started) > within:
                raise AssertionError(
                    f"no message arrived for {within} s, {total} of {expect} so far: "
                    f"{ {label: len(r.messages) for label, r in readers.items()} }"
                )
            await asyncio.sleep(0.05)
    finally:
        for reader in readers.values():
            reader.stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)
    return {label: r.messages for label, r in readers.items()}


def where(got: Mapping[str, Sequence[Message]]) -> dict[str, list[str]]:
    """mid -> labels of the queues it was found in (once per copy)."""
    found: dict[str, list[str]] = {}
    for label, messages in got.items():
        for message in messages:
            found.setdefault(mid_of(message), []).append(label)
    return {mid: sorted(labels) for mid, labels in found.items()}


async def wait_for(what: str, check: Any, within: float = 20.0, every: float = 0.1) -> None:
    """Poll ``check()`` (sync or async) until truthy; fail naming ``what`` after ``within`` s."""
    deadline = time.monotonic() + within
    while not await _value(check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(every)


#: Seconds with no progress at all after which a wait on measured progress fails: far
#: beyond any pause a busy machine makes, yet a stall still fails the test in minutes.
QUIET = 60.0


async def wait_moving(
    what: str | Callable[[], str],
    done: Callable[[], Any],
    progress: Callable[[], int],
    *,
    quiet: float = QUIET,
    every: float = 0.1,
) -> None:
    """Poll ``done()`` (sync or async) until truthy, for as long as ``progress()`` (a count
    that grows while work is being done) keeps moving; fail naming ``what`` (or what
    ``what()`` says then) and the count only once it stood still for ``quiet`` seconds - a
    stall, not a slow machine."""
    last, moved = progress(), time.monotonic()
    while not await _value(done()):
        current, now = progress(), time.monotonic()
        if current != last:
            last, moved = current, now
        elif now - moved > quiet:
            described = what if isinstance(what, str) else what()
            raise AssertionError(
                f"waiting for {described}: nothing moved for {quiet:g} s "
                f"(progress stuck at {current})"
            )
        await asyncio.sleep(every)


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def empty(sqs: SqsClient, url: str) -> bool:
    return sum(await sqs.counts(url)) == 0


async def drained(sqs: SqsClient, url: str, worker: SqsSplitWorker) -> None:
    """Wait until ``url`` (the original) is empty for as long as ``worker`` keeps receiving,
    forwarding or deleting; a stall fails naming the queue's counts and the worker's."""
    last: list[tuple[int, int, int]] = [(-1, -1, -1)]

    async def check() -> bool:
        last[0] = await sqs.counts(url)
        return sum(last[0]) == 0

    def described() -> str:
        visible, in_flight, delayed = last[0]
        stats = worker.stats
        return (
            f"the original to empty: {visible} visible, {in_flight} in flight, {delayed} "
            f"delayed; the worker received {stats.received}, forwarded "
            f"{sum(stats.forwarded.values())}, deleted {stats.deleted} (failed "
            f"{stats.delete_failed}), released {stats.released}"
        )

    stats = worker.stats
    await wait_moving(
        described, check, lambda: stats.received + sum(stats.forwarded.values()) + stats.deleted
    )


async def gone(sqs: SqsClient, url: str) -> bool:
    try:
        return not await sqs.exists(url)
    except SqsQueueMissingError:
        return True


@dataclass
class Reader:
    """Consumes one queue, noting when each message was taken (monotonic)."""

    url: str
    taken: list[tuple[str, float]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, sqs: SqsClient) -> None:
        while not self.stop.is_set():
            try:
                messages = await receive_some(sqs, self.url)
            except SqsQueueMissingError:
                return
            now = time.monotonic()
            self.messages += messages
            self.taken += [(mid_of(m), now) for m in messages]


def worker_settings(**overrides: Any) -> SqsSettings:
    """Test-friendly bounds: short polls and drain looks, a small shutdown grace."""
    values: dict[str, Any] = {
        "wait_seconds": 1,
        "drain_poll": 0.2,
        "shutdown_grace": 5.0,
        "session_end_warn_after": 20.0,
    }
    values.update(overrides)
    return SqsSettings(**values)


@contextlib.asynccontextmanager
async def running(
    sqs: SqsClient,
    split: SqsSplit,
    routes: Sequence[SessionRoute] = (),
    settings: SqsSettings | None = None,
) -> AsyncIterator[tuple[SqsSplitWorker, asyncio.Task[None]]]:
    """A worker running in this loop (``settings`` default: :func:`worker_settings`);
    stopped (bounded) on exit if still running."""
    settings = settings or worker_settings()
    worker = SqsSplitWorker(sqs, split, settings, routes)
    task = asyncio.create_task(worker.run(), name="worker")
    try:
        await asyncio.wait_for(worker.started.wait(), 10)
        yield worker, task
    finally:
        if not task.done():
            worker.stop()
        await asyncio.wait_for(task, settings.shutdown_grace + 10)


# --- the process form ---------------------------------------------------------


def process_env(server: ServerEndpoint, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION=server.region,
        PYMIRROR_LOG__FORMAT="json",
    )
    env.update(extra)
    return env


def worker_command(
    server: ServerEndpoint, queue: str, fallback: str, sessions: Path, *extra: str
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pymirror",
        "worker",
        "sqs",
        "--queue",
        queue,
        "--fallback-queue",
        fallback,
        "--sessions-file",
        str(sessions),
        "--endpoint-url",
        server.url,
        "--region",
        server.region,
        *extra,
    ]


def start_worker(
    server: ServerEndpoint,
    queue: str,
    fallback: str,
    sessions: Path,
    log: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``pymirror worker sqs`` as a child process; stdout and stderr appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            worker_command(server, queue, fallback, sessions, *extra),
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=dict(env) if env is not None else process_env(server),
        )


def write_sessions(path: Path, sessions: Iterable[Mapping[str, Any]]) -> None:
    """Write the sessions file atomically (a rename), so the watcher never reads half."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(list(sessions)))
    tmp.replace(path)
