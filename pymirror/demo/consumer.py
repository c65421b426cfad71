"""The demo's local consumer: what a developer's (or the deployed workload's) process does.

It is written with clients pymirror does not use itself (plain, synchronous ``boto3``
and ``kafka-python``; pymirror uses aiobotocore and aiokafka) and imports nothing of
pymirror, so the demo shows pymirror splitting for an ordinary program. It reads its
queue's name or URL from an environment variable (``--sqs-var``) and, with
``--kafka-var``, its topic's name from another, its consumer group id from a third
(``--group-var``) and the brokers from ``KAFKA_BOOTSTRAP_SERVERS``: exactly what
``pymirror exec`` and the operator's env patch change (the topic; the group id is the
workload's everywhere). The queue and the topic are read by one thread each.

Everything it does goes into ``--records DIR``, as files the demo reads:

* ``NAME.PID.start``: ``{"pid", "sqs", "kafka"}``, the queue and the topic (or null) it
  reads, written once it reads: the queue found (or found gone) and the group's first
  assignment received; with ``--ready-dir DIR`` it also touches ``DIR/ready-$HOSTNAME``
  then (the workload's readiness probe looks for it);
* ``NAME.PID.jsonl``: one line per message or record received, ``{"id", "via",
  "source"}`` (``via``: ``sqs`` or ``kafka``), written (and flushed) before the message is
  deleted or the record's offset committed;
* ``NAME.PID.exit``: written when it stops.

Control: the file ``NAME.pause`` makes it stop receiving (it acknowledges with
``NAME.PID.paused`` once every thread stopped), ``NAME.quit`` makes it exit 0; so does
SIGTERM. Each stop waits for the batch in hand to be recorded and acknowledged, so
nothing is received twice.

The Kafka thread is a group member (the workload's group: pymirror's split worker reads
an ended session's leftovers from the offsets that group committed on its topic). It
uses the range assignor (kafka-python 3.0's round-robin one fails when the group's
members subscribe to different topics, as a split's do) and subscribes by pattern, so
its client knows every topic's partitions when it assigns them as the group's leader
(Tansu 0.6 does not start a new rebalance when a leader rejoins with newer metadata, as
Apache Kafka does); as the leader it would rejoin forever without
:func:`keep_leader_snapshot_whole`. It never sends a LeaveGroup: a stopping consumer
commits and exits, and the group expires it (see the end of this module). Its group
timeouts are short, so the demo's joins and expiries settle quickly.

Fault hook (tests only): ``PYMIRROR_DEMO_FAULT_DROP=NAME`` makes consumer NAME drop the
first message it receives on each of its threads: acknowledged, never recorded. The demo
must then report them lost and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

FAULT_DROP = "PYMIRROR_DEMO_FAULT_DROP"
BOOTSTRAP_VAR = "KAFKA_BOOTSTRAP_SERVERS"
#: A receive returns within this long when nothing is there, so control files and
#: signals are seen quickly.
POLL_SECONDS = 1
#: Group timeouts (Tansu re-forms a group about 2.4 session timeouts after a member left).
SESSION_TIMEOUT_MS, HEARTBEAT_INTERVAL_MS = 2000, 400
#: How often the client refreshes its topic metadata (a new temporary topic is known soon).
METADATA_MAX_AGE_MS = 500
#: How long a stop may poll until its last commit is taken (a rebalance under way refuses
#: it), within the workload's termination grace period.
STOP_COMMIT_SECONDS = 8


class Consumer:
    def __init__(self, name: str, records: Path, threads: set[str]) -> None:
        self.name = name
        self.records = records
        self.pid = os.getpid()
        self.stopping = threading.Event()
        self.out = (records / f"{name}.{self.pid}.jsonl").open("a", encoding="utf-8")
        self.drop_next = set(threads) if os.environ.get(FAULT_DROP) == name else set()
        self.threads = threads
        self.paused_threads: set[str] = set()
        self.lock = threading.Lock()

    def path(self, suffix: str) -> Path:
        return self.records / f"{self.name}.{self.pid}.{suffix}"

    def write_whole(self, suffix: str, data: dict[str, Any]) -> None:
        """``data`` as the file ``NAME.PID.suffix``, written whole (by a rename)."""
        tmp = self.records / f".{self.name}.{self.pid}.{suffix}"
        tmp.write_text(json.dumps(data))
        tmp.rename(self.path(suffix))

    def paused(self, via: str) -> bool:
        """Whether thread ``via`` must not receive; acknowledged once every thread stopped."""
        if not (self.records / f"{self.name}.pause").exists():
            return False
        with self.lock:
            self.paused_threads.add(via)
            if self.paused_threads == self.threads and not self.path("paused").exists():
                self.write_whole("paused", {"pid": self.pid})
        return True

    def should_stop(self) -> bool:
        if (self.records / f"{self.name}.quit").exists():
            self.stopping.set()
        return self.stopping.is_set()

    def record(self, message_id: str, via: str, source: str) -> None:
        with self.lock:
            if via in self.drop_next:
                self.drop_next.discard(via)
                return
            line = {"id": message_id, "via": via, "source": source}
            self.out.write(json.dumps(line) + "\n")
            self.out.flush()


def sqs_loop(consumer: Consumer, queue: str, on_ready: Callable[[], None]) -> None:
    """Receive, record, delete, until told to stop (signals land between receives)."""
    import boto3  # type: ignore[import-untyped]

    sqs = boto3.client("sqs")
    try:
        url = queue if queue.startswith("http") else sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        # a fallback deleted once the workload was switched back, before this process
        # (of a template in between) started: nothing to read
        print(f"consumer {consumer.name}: SQS queue {queue} is gone", file=sys.stderr)
        on_ready()
        return
    on_ready()
    while not consumer.should_stop():
        if consumer.paused("sqs"):
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
            consumer.record(message_id(message["Body"]), "sqs", queue)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def message_id(body: str | bytes | None) -> str:
    """The demo's id of a message (its JSON body's ``id``); a body the demo did not write
    (sent by hand into a kept sandbox) gets ``foreign:<body>``: recorded and acknowledged
    like any other (the verdict counts it as not sent by the demo), never a crash."""
    try:
        parsed = json.loads(body or b"")
    except ValueError:
        parsed = None
    found = parsed.get("id") if isinstance(parsed, dict) else None
    if isinstance(found, str):
        return found
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return f"foreign:{text[:60]}"


def keep_leader_snapshot_whole() -> None:
    """Work around a kafka-python 3.0 leader that rejoins its group forever.

    Each join's prepare narrows the leader's group subscription to its own topic, and a
    metadata refresh during the join (every :data:`METADATA_MAX_AGE_MS`; Tansu answers a
    join after about a second) rebuilds the metadata snapshot from that narrow set. The
    assignment then records that snapshot as the one it assigned from, while it assigned
    from the whole cluster metadata (a pattern subscription fetches every topic) and
    widened the group subscription again: the next refresh sees every member's topic, the
    snapshots differ, and the leader rejoins. Tansu 0.6 answers with the same generation,
    so this repeats, and the leader holds no partition meanwhile: its records wait for
    minutes (seen in 3 of 24 demo runs on a loaded machine). Apache Kafka's Java client
    refreshes metadata before it assigns; here the snapshot is rebuilt from the metadata
    the assignment used, right after it."""
    from kafka.coordinator.consumer import (  # type: ignore[import-untyped]
        ConsumerCoordinator,
    )

    assign = ConsumerCoordinator._perform_assignment
    if getattr(assign, "keeps_snapshot_whole", False):
        return

    def perform_assignment(self: Any, leader_id: str, protocol: str, members: Any) -> Any:
        assignments = assign(self, leader_id, protocol, members)
        self._metadata_snapshot = self._build_metadata_snapshot(self._subscription, self._cluster)
        self._assignment_snapshot = self._metadata_snapshot
        return assignments

    perform_assignment.keeps_snapshot_whole = True  # type: ignore[attr-defined]
    ConsumerCoordinator._perform_assignment = perform_assignment


def kafka_loop(consumer: Consumer, topic: str, group: str, on_ready: Callable[[], None]) -> None:
    """Poll, record, commit, until told to stop; then commit what is left and leave the group.

    ``on_ready`` is called at the first assignment (a join completed). ``recorded`` holds,
    per partition, the offset after the last record recorded: a commit refused while the
    group rebalances is made again after the next poll, and a record below it that is
    fetched again is skipped, so no record is recorded twice.
    A paused consumer pauses its partitions; records a rebalance hands it meanwhile are
    not recorded and are fetched again (seek back), so they stay uncommitted: leftovers
    for the split worker. A stop commits what was recorded and returns without leaving
    the group (see :func:`main`)."""
    from kafka import (  # type: ignore[import-untyped]
        ConsumerRebalanceListener,
        KafkaConsumer,
        OffsetAndMetadata,
    )
    from kafka.coordinator.assignors.range import (  # type: ignore[import-untyped]
        RangePartitionAssignor,
    )
    from kafka.errors import KafkaError  # type: ignore[import-untyped]

    recorded: dict[Any, int] = {}
    committed: dict[Any, int] = {}
    #: Set while the consumer holds an assignment (from a rebalance's end to the next one).
    settled = threading.Event()
    keep_leader_snapshot_whole()
    kafka = KafkaConsumer(
        bootstrap_servers=os.environ[BOOTSTRAP_VAR],
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=[RangePartitionAssignor],
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
        metadata_max_age_ms=METADATA_MAX_AGE_MS,
        fetch_max_wait_ms=200,
        # full fetch requests: with incremental fetch sessions a partition assigned again
        # after a rebalance was seen to stay unfetched on Tansu 0.6
        enable_incremental_fetch_sessions=False,
    )

    def log(text: str) -> None:
        print(f"consumer {consumer.name}: {text}", file=sys.stderr, flush=True)

    def commit(partitions: Any = None) -> None:
        owned = recorded if partitions is None else set(partitions) & set(recorded)
        due = {p: recorded[p] for p in owned if committed.get(p) != recorded[p]}
        if not due:
            return
        try:
            kafka.commit({p: OffsetAndMetadata(o, "", -1) for p, o in due.items()})
        except KafkaError as e:  # the group is rebalancing: made again after it
            log(f"kafka commit deferred: {e!r}")
            return
        committed.update(due)

    class Listener(ConsumerRebalanceListener):  # type: ignore[misc]
        """Follows the rebalances. It runs on the client's I/O loop, which it must not
        block, so it does not commit: the polling loop does, after each poll."""

        def on_partitions_revoked(self, revoked: Any) -> None:
            settled.clear()

        def on_partitions_assigned(self, assigned: Any) -> None:
            names = sorted(f"{p.topic}/{p.partition}" for p in assigned)
            log(f"kafka partitions assigned: {names}")
            settled.set()

    def poll(timeout_ms: int = POLL_SECONDS * 1000) -> dict[Any, list[Any]]:
        """One poll; an error (a rebalance under way) is logged and polled through."""
        try:
            batches: dict[Any, list[Any]] = kafka.poll(timeout_ms=timeout_ms)
        except KafkaError as e:
            log(f"kafka poll failed, polling again: {e!r}")
            return {}
        return batches

    def receive_nothing(timeout_ms: int = POLL_SECONDS * 1000) -> None:
        """Poll (heartbeats, rebalances) with every partition paused; whatever a new
        assignment hands over meanwhile is fetched again later (seek back)."""
        kafka.pause(*kafka.assignment())
        for partition, records in poll(timeout_ms).items():
            kafka.seek(partition, records[0].offset)

    def commit_at_stop() -> None:
        """Commit what was recorded, polling through a rebalance that refuses it."""
        deadline = time.monotonic() + STOP_COMMIT_SECONDS
        while True:
            commit()
            if committed == recorded or time.monotonic() > deadline:
                return
            receive_nothing(timeout_ms=HEARTBEAT_INTERVAL_MS)

    kafka.subscribe(pattern=f"^{re.escape(topic)}$", listener=Listener())
    try:
        while not consumer.should_stop():
            if consumer.paused("kafka"):
                receive_nothing()
                continue
            if kafka.paused():
                kafka.resume(*kafka.paused())
            for partition, records in poll().items():
                for record in records:
                    if record.offset < recorded.get(partition, 0):
                        continue  # recorded before a commit the group refused
                    consumer.record(message_id(record.value), "kafka", topic)
                    recorded[partition] = record.offset + 1
            commit()
            if settled.is_set():
                on_ready()
    finally:
        commit_at_stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the pymirror demo's local consumer")
    parser.add_argument("--name", required=True)
    parser.add_argument("--records", required=True, type=Path)
    parser.add_argument(
        "--sqs-var", required=True, help="env var holding the SQS queue's name or URL"
    )
    parser.add_argument("--kafka-var", help="env var holding the Kafka topic's name")
    parser.add_argument("--group-var", help="env var holding the Kafka consumer group id")
    parser.add_argument(
        "--ready-dir",
        type=Path,
        help="touch DIR/ready-$HOSTNAME once reading (a readiness probe's file)",
    )
    args = parser.parse_args(argv)
    ready_file = args.ready_dir / f"ready-{os.environ['HOSTNAME']}" if args.ready_dir else None
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)  # an earlier process of the same pod's
    if bool(args.kafka_var) != bool(args.group_var):
        parser.error("--kafka-var and --group-var go together")
    queue = os.environ[args.sqs_var]
    topic = os.environ[args.kafka_var] if args.kafka_var else None
    consumer = Consumer(args.name, args.records, {"sqs", "kafka"} if topic else {"sqs"})

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        consumer.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ready: set[str] = set()
    failed: list[str] = []

    def on_ready(via: str) -> Callable[[], None]:
        def mark() -> None:
            with consumer.lock:
                if via in ready:
                    return
                ready.add(via)
                if ready == consumer.threads:
                    start = {"pid": consumer.pid, "sqs": queue, "kafka": topic}
                    consumer.write_whole("start", start)
                    if ready_file is not None:
                        ready_file.touch()

        return mark

    def run(via: str, loop: Callable[[], None]) -> None:
        try:
            loop()
        except Exception as e:  # reported, then the process exits 1
            failed.append(f"{via}: {e!r}")
            print(f"consumer {args.name}: {via}: {e!r}", file=sys.stderr)
            consumer.stopping.set()

    loops = {"sqs": lambda: sqs_loop(consumer, queue, on_ready("sqs"))}
    if topic:
        group = os.environ[args.group_var]
        loops["kafka"] = lambda: kafka_loop(consumer, topic, group, on_ready("kafka"))
    threads = [threading.Thread(target=run, args=item, name=item[0]) for item in loops.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        # joined with a timeout, so the main thread still takes signals
        while thread.is_alive():
            thread.join(0.2)
    if ready_file is not None:
        ready_file.unlink(missing_ok=True)
    consumer.write_whole("exit", {"pid": consumer.pid, "failed": "; ".join(failed)})
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Exit without closing the Kafka consumer, so without a LeaveGroup: the group expires
    # this member after its session timeout. Tansu 0.6 wedges a group for good when its
    # leader leaves between a rebalance's JoinGroup and SyncGroup (and a rollout stops
    # old processes just while the new one joins); an expired member it handles.
    os._exit(code)
