"""``pymirror demo``: one SQS queue split between two developers and the deployed workload.

Everything runs in this process, on an embedded SQS endpoint (moto's threaded
server on loopback), with the real engine - temporary queues made by
:mod:`splitter.sqs.queues`, the :class:`~splitter.sqs.worker.SqsSplitWorker`
- and stand-in consumers:

1. provision: the original queue ``orders`` and, from it, a fallback queue
   for the deployed workload and one queue per session (names from the
   queue format, tags and attributes copied);
2. split: a stream of messages with ``user`` and ``level`` attributes; the
   two sessions' filters overlap, so the earlier session wins a message both
   match; each message is shown with where it went;
3. end the first session: its queue's leftovers are routed again, the queue
   deleted;
4. end the last session: the worker stops, the workload drains the fallback,
   the fallback is deleted and the workload reads the original again.

At the end every message is accounted for: delivered exactly once, to the
consumer its attributes dictate (or counted as lost/duplicated - the demo
exits 1 if any is).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from rich.console import Console
from rich.live import Live
from rich.table import Table

from pymirror.local_sqs import patch_moto
from splitter.filters import FilterSpec, MessageView, compile_filter
from splitter.naming import NameFormat
from splitter.routing import Router, SessionRoute
from splitter.sqs.client import SqsClient, SqsEndpoint, connect
from splitter.sqs.queues import create_temporary_queue
from splitter.sqs.settings import SqsSettings
from splitter.sqs.split import SqsSplit
from splitter.sqs.worker import SqsSplitWorker

USERS = ("alice", "bob", "carol")
LEVELS = ("beginner", "intermediate", "expert")
SESSIONS = (
    ("alice", {"user": "^alice$"}),
    ("beginners", {"level": "^(beginner|intermediate)$"}),
)
WORKLOAD = "workload"
#: The demo's pace over the SQS settings: short polls and drain looks, so each step
#: shows within a second or two, and a bounded wait for the workload's drain.
DEMO_PACE: dict[str, object] = {
    "receivers": 2,
    "wait_seconds": 1,
    "drain_timeout": 10,
    "drain_poll": 0.2,
}


@dataclass
class Ledger:
    """Who sent what, who got what."""

    sent: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> attributes
    expected: dict[str, str] = field(default_factory=dict)  # id -> the consumer it must reach
    got: dict[str, list[str]] = field(default_factory=dict)  # id -> consumers
    recent: list[tuple[str, str, str, str]] = field(default_factory=list)
    #: Called with one line per delivery when there is no live table (not a terminal).
    echo: Callable[[str], None] | None = None

    def received(self, consumer: str, message: dict[str, object]) -> None:
        body = str(message["Body"])
        self.got.setdefault(body, []).append(consumer)
        attrs = self.sent.get(body, {})
        self.recent.append((body, attrs.get("user", ""), attrs.get("level", ""), consumer))
        if self.echo is not None:
            shown = " ".join(f"{k}={v}" for k, v in attrs.items())
            self.echo(f"   {body} {shown:<30} -> {consumer}")
        del self.recent[:-12]

    def counts(self) -> Counter[str]:
        return Counter(c for consumers in self.got.values() for c in consumers)


def _attributes(rng: random.Random) -> dict[str, str]:
    return {"user": rng.choice(USERS), "level": rng.choice(LEVELS)}


async def _consume(
    client: SqsClient, url: Callable[[], str | None], name: str, ledger: Ledger, stop: asyncio.Event
) -> None:
    """A stand-in consumer: receive, record, delete, until ``stop``."""
    while not stop.is_set():
        queue = url()
        if queue is None:
            await asyncio.sleep(0.05)
            continue
        try:
            messages = await client.receive(queue, wait_seconds=1)
        except Exception:  # the queue was deleted under us (session ended): stop
            await asyncio.sleep(0.05)
            continue
        for message in messages:
            ledger.received(name, message)
        if messages:
            await client.delete_batch(
                queue, [(str(i), m["ReceiptHandle"]) for i, m in enumerate(messages)]
            )


def _view(phase: str, ledger: Ledger, names: dict[str, str]) -> Table:
    table = Table(title=f"pymirror demo - {phase}", expand=False)
    table.add_column("message")
    table.add_column("user")
    table.add_column("level")
    table.add_column("delivered to")
    for body, user, level, consumer in ledger.recent:
        table.add_row(body, user, level, f"{consumer} ({names.get(consumer, '')})")
    counts = ledger.counts()
    table.caption = "  ".join(f"{c}: {counts[c]}" for c in names) + f"  sent: {len(ledger.sent)}"
    return table


async def run_demo(
    console: Console,
    *,
    messages: int,
    rate: float,
    endpoint: str,
    seed: int = 7,
    sqs: SqsSettings | None = None,
) -> int:
    """Run the scenario against ``endpoint``; 0 if every message arrived exactly once.

    The worker runs with ``sqs`` (default: the defaults) at :data:`DEMO_PACE`.
    """
    settings = (sqs or SqsSettings()).model_copy(update=DEMO_PACE)
    rng = random.Random(seed)
    ledger = Ledger(echo=None if console.is_terminal else console.print)
    started = time.monotonic()
    async with connect(SqsEndpoint(endpoint, "us-east-1", "demo", "demo")) as client:
        console.print("[bold]1. provision[/bold]: original queue [cyan]orders[/cyan]")
        original = await client.create_queue(
            "orders", {"VisibilityTimeout": "10"}, {"team": "shop", "env": "staging"}
        )
        fmt = NameFormat("mirrord-tmp-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}", "sqs")
        fallback = await create_temporary_queue(client, original, fmt, fallback=True, session=None)
        console.print(f"   fallback for the deployed workload: [cyan]{fallback.name}[/cyan]")
        routes = []
        names = {}
        for sequence, (session, message_filter) in enumerate(SESSIONS, start=1):
            queue = await create_temporary_queue(
                client, original, fmt, fallback=False, session=session
            )
            flt = compile_filter(FilterSpec(message_filter), where=f"session {session!r}")
            routes.append(SessionRoute(session, sequence, flt, queue.url))
            names[session] = queue.name
            shown = ", ".join(f"{k}={v}" for k, v in message_filter.items())
            console.print(
                f"   session #{sequence} [green]{session}[/green] filter {shown} "
                f"-> [cyan]{queue.name}[/cyan]"
            )
        names[WORKLOAD] = fallback.name
        both = Router(routes, WORKLOAD)
        after_alice = Router(routes[1:], WORKLOAD)
        worker = SqsSplitWorker(client, SqsSplit(original, fallback.url), settings, routes)
        urls: dict[str, str | None] = {r.session_id: r.destination for r in routes}
        workload_url: list[str] = [fallback.url]
        stops = {name: asyncio.Event() for name in (*urls, WORKLOAD)}
        async with asyncio.TaskGroup() as tg:
            work = tg.create_task(worker.run(), name="worker")
            for session in urls:
                tg.create_task(
                    _consume(client, partial(urls.get, session), session, ledger, stops[session]),
                    name=f"consumer-{session}",
                )
            tg.create_task(
                _consume(client, lambda: workload_url[0], WORKLOAD, ledger, stops[WORKLOAD]),
                name="consumer-workload",
            )
            with Live(
                _view("split", ledger, names),
                console=console,
                refresh_per_second=8,
                transient=not console.is_terminal,
            ) as live:
                console.print(f"[bold]2. split[/bold]: {messages} messages at {rate:g}/s")
                for n in range(messages):
                    await _send(client, original, ledger, f"order-{n:04d}", _attributes(rng), both)
                    live.update(_view("split", ledger, names))
                    await asyncio.sleep(1 / rate)
                await _settle(ledger, messages, live, names)
                # The first developer quits: their process stops first, so a few
                # messages wait in their queue and must be routed again.
                stops["alice"].set()
                await asyncio.sleep(1.5)  # its last long poll ends
                for n in range(messages, messages + 6):
                    attrs = {"user": "alice", "level": rng.choice(LEVELS)}
                    await _send(client, original, ledger, f"order-{n:04d}", attrs, after_alice)
                await asyncio.sleep(1.0)
                console.print(
                    "[bold]3. end session alice[/bold]: leftovers in its queue go to the "
                    "remaining sessions or the fallback; its queue is deleted"
                )
                worker.set_routes(routes[1:])
                while (await client.list_queues(names["alice"])) != []:
                    live.update(_view("ending alice", ledger, names))
                    await asyncio.sleep(0.2)
                urls["alice"] = None
                console.print(f"   re-routed: {worker.stats.rerouted}")
                console.print(
                    "[bold]4. end session beginners[/bold]: the worker stops, the workload "
                    "drains the fallback, the fallback is deleted"
                )
                worker.set_routes([])
                await work
                workload_url[0] = original  # env restored: the workload reads the original
                await _settle(ledger, len(ledger.sent), live, names)
                for stop in stops.values():
                    stop.set()
                live.update(_view("done", ledger, names))
        left = await client.list_queues("mirrord-tmp-")
    return _report(console, ledger, worker, left, time.monotonic() - started)


async def _send(
    client: SqsClient, queue: str, ledger: Ledger, body: str, attrs: dict[str, str], by: Router
) -> None:
    """Send one message and note where ``by`` must deliver it."""
    attributes = {k: {"DataType": "String", "StringValue": v} for k, v in attrs.items()}
    ledger.sent[body] = attrs
    target = by.route(MessageView.from_sqs(attributes, body))[0]
    ledger.expected[body] = target.session_id or WORKLOAD
    await client.send_batch(
        queue, [{"Id": "0", "MessageBody": body, "MessageAttributes": attributes}]
    )


async def _settle(ledger: Ledger, count: int, live: Live, names: dict[str, str]) -> None:
    """Wait (bounded) until ``count`` messages were delivered."""
    deadline = time.monotonic() + 30
    while sum(ledger.counts().values()) < count and time.monotonic() < deadline:
        live.update(_view("split", ledger, names))
        await asyncio.sleep(0.1)


def _report(
    console: Console, ledger: Ledger, worker: SqsSplitWorker, left: list[str], seconds: float
) -> int:
    lost = [m for m in ledger.sent if m not in ledger.got]
    duplicated = [m for m, c in ledger.got.items() if len(c) > 1]
    misrouted = [m for m, c in ledger.got.items() if c[0] != ledger.expected.get(m)]
    counts = ledger.counts()
    console.print(
        f"sent {len(ledger.sent)}, delivered {sum(counts.values())} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
        f"re-routed {worker.stats.rerouted}, returned {worker.stats.returned}; "
        f"lost {len(lost)}, duplicated {len(duplicated)}, misrouted {len(misrouted)}; "
        f"temporary queues left {len(left)}; {seconds:.1f} s"
    )
    ok = not (lost or duplicated or misrouted or left)
    console.print("[bold green]OK[/bold green]" if ok else "[bold red]FAILED[/bold red]")
    return 0 if ok else 1


def embedded_endpoint() -> tuple[str, Callable[[], None]]:
    """Start moto's threaded SQS server on a free loopback port: (URL, stop)."""
    from moto.server import ThreadedMotoServer

    patch_moto()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return f"http://{host}:{port}", server.stop
