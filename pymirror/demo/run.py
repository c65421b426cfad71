"""The demo's driver: the whole product on one machine, in the demo's own sandbox.

1. ``pymirror sandbox up --kafka-broker tansu`` (API server, moto, Tansu, the local
   runtime, the operator); the queue ``orders``, the topic ``orders-events``, the
   workload ``shop`` (the demo's consumer as a stand-in Deployment) and its registry
   objects (:mod:`pymirror.demo.world`); with ``kafka=False`` no broker and no topic;
2. alice's then bob's ``pymirror exec`` sessions (each splits the queue and the topic),
   each running the demo's consumer as the local command, with overlapping filters
   (:mod:`pymirror.demo.plan`);
3. the three batches of :mod:`pymirror.demo.plan`, each followed by a wait until every
   message is where it must be, every delivery printed as it comes (the live view; the
   queue's and the topic's messages are sent and awaited together):
   both sessions; alice leaving with leftovers; after bob left too and the queue was
   handed back;
4. the verdict: each message counted against where it had to go, the workload's env
   compared with the original, the temporary resources counted; then ``sandbox down``.

Every wait is on measured progress (records the consumers wrote, the broker's counts,
the API server's objects), bounded by ``timeout`` only against a hang: what a timed-out
wait still missed shows up in the verdict.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pymirror.demo import world
from pymirror.demo.consumer import HEARTBEAT_INTERVAL_MS, SESSION_TIMEOUT_MS
from pymirror.demo.plan import (
    DEVELOPERS,
    PHASES,
    VIAS,
    WORKLOAD,
    Delivery,
    Message,
    batch,
    verdict,
)
from pymirror.demo.records import Process, Records
from pymirror.demo.sandbox_cli import DemoError, sandbox_down, sandbox_up
from pymirror.demo.topics import Topics
from pymirror.sandbox.workloads import STAND_IN_KINDS
from registry.models import (
    MirrordKafkaClientConfig,
    MirrordKafkaTopicsConsumer,
    MirrordWorkloadQueueRegistry,
)
from registry.objects import Kube, Obj, Objects
from registry.resources import Resource
from registry.session_models import QueueSplit, SplitSession

DEPLOYMENTS = STAND_IN_KINDS.resource("Deployment")
POLL = 0.1


@dataclass(frozen=True)
class DemoOptions:
    state_dir: Path
    per_author: int = 3
    keep: bool = False
    timeout: float = 90.0
    #: Split a Kafka topic too (on Tansu), not only the SQS queue.
    kafka: bool = True


@dataclass
class Session:
    """One developer's ``pymirror exec``."""

    name: str
    process: asyncio.subprocess.Process
    log: Path


@dataclass
class Demo:
    console: Console
    options: DemoOptions
    records: Records
    env: dict[str, str]
    kube: Kube
    sqs: Any
    #: None: the demo runs without Kafka.
    topics: Topics | None
    messages: list[Message] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sessions: dict[str, Session] = field(default_factory=dict)
    #: Sessions the demo is ending (their ``exec`` is expected to exit).
    ending: set[str] = field(default_factory=set)
    expected: dict[str, Message] = field(default_factory=dict)
    seen: dict[str, list[str]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def say(self, text: str) -> None:
        self.console.print(
            f"[dim]{time.monotonic() - self.started:6.1f}s[/dim] {text}", soft_wrap=True
        )

    # --- the live view ---------------------------------------------------------------------

    def pump(self) -> None:
        """Print each new delivery: message, author, consumer, the queue/topic it came from."""
        for d in self.records.new_deliveries():
            self.show(d)

    def show(self, d: Delivery) -> None:
        message = self.expected.get(d.id)
        previous = self.seen.setdefault(d.id, [])
        previous.append(d.consumer)
        note = ""
        if message is None:
            note = " [red]NOT SENT BY THE DEMO[/red]"
        elif len(previous) > 1:
            note = f" [red]DUPLICATE (also {', '.join(previous[:-1])})[/red]"
        elif d.consumer != message.expected:
            note = f" [red]MISROUTED (expected {message.expected})[/red]"
        elif message.first != d.consumer:
            note = f" [yellow](leftover of {message.first}'s session, routed again)[/yellow]"
        author = message.author if message else "?"
        self.console.print(
            f"  {d.id:5} author={author:6} -> [bold]{d.consumer:8}[/bold] "
            f"[dim]{d.source}[/dim]{note}",
            soft_wrap=True,
        )

    async def wait(self, what: str, check: Callable[[], Awaitable[bool] | bool]) -> bool:
        """Poll ``check`` (pumping the view) until true; on timeout record a problem."""
        deadline = time.monotonic() + self.options.timeout
        while True:
            self.pump()
            self.check_sessions()
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return True
            if time.monotonic() > deadline:
                self.problems.append(f"timed out after {self.options.timeout:.0f} s: {what}")
                self.say(f"[red]timed out waiting for {what}[/red]")
                return False
            await asyncio.sleep(POLL)

    def check_sessions(self) -> None:
        """A developer's ``exec`` that exited before the demo ended its session stops the demo."""
        for name, session in self.sessions.items():
            code = session.process.returncode
            if code is not None and name not in self.ending:
                tail = session.log.read_text(errors="replace")[-1500:]
                raise DemoError(f"{name}'s pymirror exec exited {code} unexpectedly:\n{tail}")

    def delivered(
        self, messages: list[Message], *, holding: tuple[str, ...] = ()
    ) -> Callable[[], Awaitable[bool]]:
        """A check: every message of ``messages`` was received, or the queues are settled
        without it (every queue and topic but those of ``holding`` empty - SQS: nothing
        visible, in flight or delayed; Kafka: nothing past the group's committed offsets -
        on two looks a second apart, and no delivery in between): then what is missing is
        lost, and the verdict says so."""
        quiet_since: list[tuple[float, int]] = []

        async def check() -> bool:
            if all(self.seen.get(m.id) for m in messages):
                return True
            if not await asyncio.to_thread(self.queues_empty, holding):
                quiet_since.clear()
                return False
            count = len(self.records.deliveries)
            if not quiet_since or quiet_since[0][1] != count:
                quiet_since[:] = [(time.monotonic(), count)]
                return False
            if time.monotonic() - quiet_since[0][0] < 1.0:
                return False
            missing = [m.id for m in messages if not self.seen.get(m.id)]
            self.say(f"[red]the queues are empty and nobody received {', '.join(missing)}[/red]")
            return True

        return check

    def queues_empty(self, holding: tuple[str, ...]) -> bool:
        if self.topics is not None and not self.topics.settled(holding):
            return False
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        for url in self.sqs.list_queues().get("QueueUrls", []):
            if url.rsplit("/", 1)[-1] in holding:
                continue
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
            if any(int(attributes["Attributes"].get(n, 0)) for n in names):
                return False
        return True

    # --- sending ------------------------------------------------------------------------

    async def send(self, phase: str) -> list[Message]:
        """One batch to the queue and, with Kafka, one to the topic, sent at once."""
        sending = {"sqs": (world.QUEUE, self._send_sqs)}
        if self.topics is not None:
            sending["kafka"] = (world.TOPIC, partial(self.topics.send, world.TOPIC))
        sent: list[Message] = []
        for via in sending:
            start = sum(1 for m in self.messages if m.via == via)
            sent += batch(phase, self.options.per_author, start, via)
        self.messages += sent
        self.expected.update({m.id: m for m in sent})
        await asyncio.gather(
            *(
                asyncio.to_thread(send, [m for m in sent if m.via == via])
                for via, (_, send) in sending.items()
            )
        )
        for via, (name, _) in sending.items():
            counts = Counter(m.author for m in sent if m.via == via)
            self.say(
                f"sent {counts.total()} {'messages' if via == 'sqs' else 'records'} to {name}: "
                + ", ".join(f"{n} by {a}" for a, n in counts.items())
            )
        return sent

    def _send_sqs(self, messages: list[Message]) -> None:
        url = self.sqs.get_queue_url(QueueName=world.QUEUE)["QueueUrl"]
        for m in messages:
            attributes = {"author": {"DataType": "String", "StringValue": m.author}}
            self.sqs.send_message(
                QueueUrl=url, MessageBody=json.dumps(m.body), MessageAttributes=attributes
            )

    # --- the developers' sessions -----------------------------------------------------------

    async def start_session(self, name: str) -> None:
        directory = self.options.state_dir
        config = directory / f"{name}.mirrord.json"
        kafka = self.topics is not None
        config.write_text(json.dumps(world.developer_config(DEVELOPERS[name], kafka=kafka)))
        log = directory / f"exec-{name}.log"
        kinds = {k: DEPLOYMENTS.api_version for k in ("Deployment", "StatefulSet")}
        env = {**os.environ, **self.env, "PYMIRROR_OPERATOR__WORKLOAD_KINDS": json.dumps(kinds)}
        if kafka:  # the developer runs with the workload's group id, as mirrord gives it
            env[world.GROUP_VAR] = world.GROUP
        command = world.consumer_command(name, self.records.directory, kafka=kafka)
        argv = ["-m", "pymirror", "exec", "-f", str(config), "--", *command]
        self.say(
            f"{name}: pymirror exec -f {config.name} -- consumer "
            f"(filter author={DEVELOPERS[name]}; log {log})"
        )
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                command[0],
                *argv,
                stdout=out,
                stderr=out,
                stdin=asyncio.subprocess.DEVNULL,
                env=env,
            )
        self.sessions[name] = Session(name, process, log)

        def running() -> bool:
            return bool(self.records.running(name))

        if not await self.wait(f"{name}'s session to be Ready and the consumer to run", running):
            raise DemoError(f"{name}'s session never became Ready; see {log}")
        [consumer] = self.records.running(name)
        self.say(f"{name}: session Ready; the local consumer reads {reads(consumer)}")

    async def end_session(self, name: str) -> None:
        session = self.sessions[name]
        self.ending.add(name)
        self.records.quit(name)
        self.say(f"{name}: the local consumer quits; pymirror exec ends the session")

        async def exited() -> bool:
            return session.process.returncode is not None

        if not await self.wait(f"{name}'s pymirror exec to exit", exited):
            session.process.terminate()
            await session.process.wait()
        code = session.process.returncode
        if code != 0:
            self.problems.append(f"{name}'s pymirror exec exited {code} (log {session.log})")
        self.say(f"{name}: pymirror exec exited {code}: session ended")

    # --- the cluster's state ----------------------------------------------------------------

    def objects(self, resource: Resource, namespace: str) -> Objects:
        return self.kube.objects(resource, namespace)

    async def workload_template(self) -> Obj:
        app = await self.objects(DEPLOYMENTS, world.NAMESPACE).get(world.APP)
        template: Obj = app["spec"]["template"]
        return template

    async def temporary_resources(self) -> list[str]:
        """Everything pymirror makes for a session that must be gone at the end."""
        left: list[str] = []
        urls = (await asyncio.to_thread(self.sqs.list_queues)).get("QueueUrls", [])
        left += [f"SQS queue {u.rsplit('/', 1)[-1]}" for u in urls if world.TEMPORARY_PREFIX in u]
        if self.topics is not None:
            names = await asyncio.to_thread(self.topics.topics)
            left += [
                f"Kafka topic {t}" for t in sorted(names) if t.startswith(world.TEMPORARY_PREFIX)
            ]
        for resource, namespace in (
            (SplitSession.RESOURCE, world.NAMESPACE),
            (QueueSplit.RESOURCE, world.OPERATOR_NAMESPACE),
            (DEPLOYMENTS, world.OPERATOR_NAMESPACE),
        ):
            listed = await self.objects(resource, namespace).list()
            left += [f"{resource.plural} {namespace}/{o['metadata']['name']}" for o in listed.items]
        return left

    def waiting(self, via: str, name: str) -> int:
        """Messages waiting in queue ``name`` (``via`` sqs), or records of topic ``name`` the
        group did not commit (``via`` kafka)."""
        if via == "kafka":
            assert self.topics is not None
            return self.topics.unconsumed(name)
        url = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])


def sqs_client(env: dict[str, str]) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client(
        "sqs",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )


def clear_records(directory: Path) -> None:
    """The records of an earlier run (files the demo's consumers write, nothing else)."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.iterdir():
        if path.suffix in (".jsonl", ".start", ".exit", ".paused", ".pause", ".quit") or (
            path.name.startswith("ready-")
        ):
            path.unlink()


async def run_demo(console: Console, options: DemoOptions) -> int:
    state = options.state_dir
    state.mkdir(parents=True, exist_ok=True)
    sandbox_dir = state / "sandbox"
    records = Records(state / "records")
    clear_records(records.directory)
    started = time.monotonic()

    def progress(line: str) -> None:
        console.print(
            f"[dim]{time.monotonic() - started:6.1f}s[/dim] {escape(line)}",
            highlight=False,
            soft_wrap=True,
        )

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    signals: list[int] = []

    def interrupted(signum: int) -> None:
        signals.append(signum)
        task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted, signum)
    progress("starting the demo's sandbox (pymirror sandbox up)")
    try:
        env = await sandbox_up(sandbox_dir, world.NAMESPACE, on_line=progress, kafka=options.kafka)
        return await _run_in_sandbox(console, options, records, env, started)
    except asyncio.CancelledError:
        if not signals:
            raise
        name = signal.Signals(signals[0]).name
        progress(f"{name}: the sessions were ended; bringing the sandbox down")
        return 128 + signals[0]
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        if options.keep and not signals:
            progress(
                f'the sandbox stays up: eval "$(pymirror sandbox env --state-dir {sandbox_dir})"'
            )
        elif (sandbox_dir / "state.json").exists():
            await sandbox_down(sandbox_dir, progress)


async def _run_in_sandbox(
    console: Console, options: DemoOptions, records: Records, env: dict[str, str], started: float
) -> int:
    sqs = sqs_client(env)
    topics = None
    if options.kafka:
        topics = await asyncio.to_thread(Topics, env["KAFKA_BOOTSTRAP_SERVERS"], world.GROUP)
    async with Kube.from_kubeconfig(env["KUBECONFIG"]) as kube:
        demo = Demo(console, options, records, env, kube, sqs, topics, started=started)
        try:
            return await _scenario(demo)
        finally:
            if topics is not None:
                await asyncio.to_thread(topics.close)
            # An interrupted demo: each exec gets SIGTERM, stops its consumer and ends its
            # session (waiting for the operator) before the sandbox goes down.
            for session in demo.sessions.values():
                if session.process.returncode is None:
                    demo.say(f"{session.name}: stopping pymirror exec (it ends the session)")
                    session.process.terminate()
                    await session.process.wait()


async def _scenario(demo: Demo) -> int:
    kafka = demo.topics is not None
    await asyncio.to_thread(demo.sqs.create_queue, QueueName=world.QUEUE)
    what = f"SQS queue {world.QUEUE}"
    if demo.topics is not None:
        await asyncio.to_thread(demo.topics.create, world.TOPIC)
        await demo.objects(MirrordKafkaClientConfig.RESOURCE, world.OPERATOR_NAMESPACE).create(
            world.kafka_client_config(
                demo.env["KAFKA_BOOTSTRAP_SERVERS"],
                {"session": SESSION_TIMEOUT_MS, "heartbeat": HEARTBEAT_INTERVAL_MS},
            )
        )
        await demo.objects(MirrordKafkaTopicsConsumer.RESOURCE, world.NAMESPACE).create(
            world.kafka_topics_consumer()
        )
        what += f" and Kafka topic {world.TOPIC} (group {world.GROUP})"
    deployments = demo.objects(DEPLOYMENTS, world.NAMESPACE)
    created = await deployments.create(world.workload(demo.records.directory, kafka=kafka))
    original = copy.deepcopy(created["spec"]["template"])
    await demo.objects(MirrordWorkloadQueueRegistry.RESOURCE, world.NAMESPACE).create(
        world.queue_registry()
    )
    demo.say(f"workload deployment/{world.APP} reads {what}")
    await demo.wait("the workload's consumer to run", lambda: bool(demo.records.running(WORKLOAD)))

    # 1. both sessions
    for name in DEVELOPERS:
        await demo.start_session(name)
    await demo.wait(
        "the workload to read the fallbacks only", lambda: workload_reads(demo, fallback=True)
    )
    demo.say(f"[bold]phase 1 ({PHASES[0]})[/bold]: alice and bob both split; pair matches both")
    first = await demo.send(PHASES[0])
    await demo.wait("every message of phase 1", demo.delivered(first))

    # 2. alice leaves with leftovers
    demo.say(f"[bold]phase 2 ({PHASES[1]})[/bold]: alice stops reading; her messages pile up")
    demo.records.pause("alice")
    await demo.wait("alice's consumer to pause", lambda: demo.records.paused("alice"))
    second = await demo.send(PHASES[1])
    [alice] = demo.records.running("alice")
    holding = (alice.sqs, *([alice.kafka] if alice.kafka else []))
    await demo.wait(
        "bob's and the workload's phase-2 messages",
        demo.delivered([m for m in second if m.first != "alice"], holding=holding),
    )
    await demo.wait("alice's phase-2 messages in her temporary queue and topic", piled_up(demo))
    for via, name in zip(VIAS, holding, strict=False):
        waiting = await asyncio.to_thread(demo.waiting, via, name)
        demo.say(f"alice's temporary {NOUNS[via]} {name} holds {waiting} unread {UNITS[via]}")
    await demo.end_session("alice")
    await demo.wait("alice's leftovers routed again", demo.delivered(second))

    async def alice_gone() -> bool:
        left = await demo.temporary_resources()
        return not any(r.endswith(f" {name}") for r in left for name in holding)

    if await demo.wait(f"alice's temporary {' and '.join(holding)} to be deleted", alice_gone):
        demo.say(f"alice's temporary {' and '.join(holding)} are gone; bob's session goes on")

    # 3. bob leaves: the queue (and topic) handed back, the env restored
    await demo.end_session("bob")
    demo.say(
        "the last session ended: hand-back (the workload drains the fallbacks, its env is restored)"
    )
    handing_back = HandBackView(demo)

    async def restored_check() -> bool:
        await handing_back.show()
        return await template_is(demo, original)

    restored = await demo.wait("the workload's env restored", restored_check)
    env = f"{world.QUEUE_VAR}={world.QUEUE}"
    if kafka:
        env += f" {world.TOPIC_VAR}={world.TOPIC}"
    demo.say(f"deployment/{world.APP}'s env is the original again: {env}")
    await demo.wait(
        "the workload to read the originals only", lambda: workload_reads(demo, fallback=False)
    )
    demo.say(f"[bold]phase 3 ({PHASES[2]})[/bold]: no session: everything to the workload")
    third = await demo.send(PHASES[2])
    await demo.wait("every message of phase 3", demo.delivered(third))

    async def nothing_left() -> bool:
        return not await demo.temporary_resources()

    await demo.wait("every temporary resource to be gone", nothing_left)
    left = await demo.temporary_resources()
    for resource in left:
        demo.say(f"[red]left behind: {resource}[/red]")
    summary(demo)
    result = verdict(
        demo.messages,
        demo.records.deliveries,
        temporary_left=len(left),
        env_restored=restored and await template_is(demo, original),
        problems=demo.problems,
    )
    for problem in result.problems:
        demo.say(f"[red]problem: {problem}[/red]")
    demo.console.print(result.line(), highlight=False, markup=False, soft_wrap=True)
    return 0 if result.ok else 1


NOUNS = {"sqs": "queue", "kafka": "topic"}
UNITS = {"sqs": "messages", "kafka": "records"}


def reads(process: Process) -> str:
    """What a consumer process reads: its queue, and its topic."""
    return process.sqs + (f" and {process.kafka}" if process.kafka else "")


def workload_reads(demo: Demo, *, fallback: bool) -> bool:
    """Every running workload process reads the fallbacks (``fallback``) or the originals."""
    running = demo.records.running(WORKLOAD)
    originals = {world.QUEUE, world.TOPIC}
    return bool(running) and all(
        (p.sqs not in originals) == fallback
        and (p.kafka is None or (p.kafka not in originals) == fallback)
        for p in running
    )


def piled_up(demo: Demo) -> Callable[[], Awaitable[bool]]:
    """A check: alice's temporary queue (and topic) hold her unread messages of phase 2."""

    async def check() -> bool:
        [alice] = demo.records.running("alice")
        for via, name in (("sqs", alice.sqs), ("kafka", alice.kafka)):
            if name is None:
                continue
            unread = [
                m for m in demo.messages if (m.first, m.phase, m.via) == ("alice", PHASES[1], via)
            ]
            if await asyncio.to_thread(demo.waiting, via, name) != len(unread):
                return False
        return True

    return check


@dataclass
class HandBackView:
    """Prints each change of the QueueSplit's hand-back (phase, remaining, message)."""

    demo: Demo
    #: The last change shown, per split.
    last: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    async def show(self) -> None:
        listed = await self.demo.objects(QueueSplit.RESOURCE, world.OPERATOR_NAMESPACE).list()
        for split in listed.items:
            back = (split.get("status") or {}).get("handBack") or {}
            now = (split["metadata"]["name"], back.get("phase"), back.get("remaining"))
            if back and now != self.last.get(now[0]):
                self.last[now[0]] = now
                detail = f"; {back['message']}" if back.get("message") else ""
                self.demo.say(
                    f"hand-back of {now[0]}: {now[1]}, {now[2]} left in the fallback{detail}"
                )


async def template_is(demo: Demo, original: Obj) -> bool:
    return await demo.workload_template() == original


def summary(demo: Demo) -> None:
    table = Table(title="where the messages went (per phase, SQS and Kafka)")
    table.add_column("phase")
    table.add_column("via")
    consumers = [WORKLOAD, *DEVELOPERS]
    for name in consumers:
        table.add_column(name, justify="right")
    first_consumer: dict[str, str] = {}
    for d in demo.records.deliveries:
        first_consumer.setdefault(d.id, d.consumer)
    vias = [via for via in VIAS if any(m.via == via for m in demo.messages)]
    for phase in PHASES:
        for via in vias:
            ids = [m.id for m in demo.messages if (m.phase, m.via) == (phase, via)]
            row = [str(sum(1 for i in ids if first_consumer.get(i) == c)) for c in consumers]
            table.add_row(phase, via, *row)
    demo.console.print(table)
