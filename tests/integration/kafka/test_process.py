"""``pymirror worker kafka`` as a process on real brokers: bad input, sessions file, metrics.

Broker quirks met here (docs/testing.md, "Kafka broker quirks"): a consumer's metadata request
for a missing topic may auto-create it, so the worker checks every topic with
the admin client before it joins the group - the missing-topic case asserts
the topic is still missing afterwards. Tansu under-reports end offsets after
a batched produce; the hand-back here moves the whole fallback back to the
original, read past the listed end (``TopicReader.read_to_end``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.kafka.support import (
    Sent,
    create_topics,
    list_topics,
    make_records,
    produce,
    read_all,
    wait_until,
    worker_argv,
)
from tests.servers.kafka import KafkaBroker
from tests.servers.process import free_port

pytestmark = pytest.mark.integration

PARTITIONS = 2


def sessions_json(*entries: dict[str, object]) -> str:
    return json.dumps(list(entries))


async def run_worker(argv: list[str], within: float = 30) -> tuple[int, str]:
    env = {**os.environ, "PYMIRROR_KAFKA__COMMIT_INTERVAL": "0.1"}
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with asyncio.timeout(within):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:  # timed out or cancelled: never leave a worker behind
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def group_offsets(broker: KafkaBroker, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        offsets = await admin.list_consumer_group_offsets(group, partitions=tps)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


@pytest.mark.parametrize(
    ("case", "error"),
    [
        (
            "unknown property",
            "KafkaPropertyError: unsupported Kafka client property 'fetch.wait.max.msec'",
        ),
        ("invalid regex", "FilterError: session 'alice' message_filter.user:"),
        ("missing topic", "KafkaTopicError: topic '{missing}' does not exist"),
    ],
    ids=["unknown-property", "invalid-regex", "missing-topic"],
)
async def test_bad_input_fails_with_a_clear_error_before_anything_is_created(
    kafka_broker: KafkaBroker, unique_name: str, tmp_path: Path, case: str, error: str
) -> None:
    """Each bad input: exit 1, ``ErrorName: message`` naming the culprit, no traceback,
    no topic created, no offset committed for the group."""
    original, fallback, alice = unique_name, f"{unique_name}-fb", f"{unique_name}-alice"
    missing, group = f"{unique_name}-missing", f"{unique_name}-g"
    await create_topics(kafka_broker, PARTITIONS, original, fallback, alice)
    await produce(kafka_broker, original, make_records(4, PARTITIONS, ["alice", "bob"]))
    session = {"id": "alice", "sequence": 1, "topic": alice, "message_filter": {"user": "^alice$"}}
    extra: list[str] = []
    if case == "unknown property":
        extra = ["--property", "fetch.wait.max.msec=100"]
    elif case == "invalid regex":
        session["message_filter"] = {"user": "^(alice$"}
    else:
        session["topic"] = missing
    sessions = tmp_path / "sessions.json"
    sessions.write_text(sessions_json(session))
    before = set(await list_topics(kafka_broker))

    code, out = await run_worker(
        worker_argv(kafka_broker, original, group, fallback, sessions, *extra)
    )

    assert code == 1, out
    assert error.format(missing=missing) in out
    assert "Traceback" not in out
    assert set(await list_topics(kafka_broker)) == before
    assert missing not in before
    assert await group_offsets(kafka_broker, group, original) == {}


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("pymirror_kafka_")
    }


async def test_worker_process_follows_its_sessions_file_exports_metrics_and_hands_back(
    kafka_broker: KafkaBroker, unique_name: str, tmp_path: Path
) -> None:
    """Narrated:

    1. ``pymirror worker kafka`` starts with one session (alice) and
       ``--drain-timeout 0``; 40 records arrive: alice's reach her topic, the
       rest the fallback; the metrics endpoint counts them per session.
    2. The sessions file becomes ``[]``: alice's session ends (nobody read
       her topic, so her 20 records are routed again: to the fallback) and it
       was the last one, so the worker stops consuming (offsets committed),
       skips the drain wait (timeout 0), moves the unconsumed fallback - all
       40 records - back to the original, deletes alice's topic, keeps the
       fallback (``--keep-fallback``) and exits 0.
    The original then holds each of the 40 ids once more after the worker's
    committed offsets: nothing lost, nothing doubled.
    """
    original, fallback, alice = unique_name, f"{unique_name}-fb", f"{unique_name}-alice"
    group = f"{unique_name}-g"
    await create_topics(kafka_broker, PARTITIONS, original, fallback, alice)
    sessions = tmp_path / "sessions.json"
    sessions.write_text(
        sessions_json(
            {"id": "alice", "sequence": 1, "topic": alice, "message_filter": {"user": "^alice$"}}
        )
    )
    port = free_port()
    argv = worker_argv(
        kafka_broker,
        original,
        group,
        fallback,
        sessions,
        "--metrics-port",
        str(port),
        "--drain-timeout",
        "0",
        "--keep-fallback",
    )
    worker = asyncio.create_task(run_worker(argv, within=90))
    sent = make_records(40, PARTITIONS, ["alice", "bob"])
    await produce(kafka_broker, original, sent)
    got_alice = await read_all(kafka_broker, alice, PARTITIONS, expect=20)
    got_fallback = await read_all(kafka_broker, fallback, PARTITIONS, expect=20)
    assert sorted(g.id for g in got_alice) == [r.id for r in sent if r.id[-1] in "02468"]
    assert sorted(g.id for g in got_fallback) == [r.id for r in sent if r.id[-1] in "13579"]

    split = (("split", original),)
    want = {
        ("pymirror_kafka_read_total", split): 40.0,
        ("pymirror_kafka_forwarded_total", (("session", "alice"), *split)): 20.0,
        ("pymirror_kafka_forwarded_total", (("session", "fallback"), *split)): 20.0,
        ("pymirror_kafka_committed_total", split): 40.0,
    }

    def counted() -> bool:
        assert not worker.done(), worker.result()[1][-3000:]
        try:
            metrics = scrape(port)
        except OSError:
            return False
        return all(metrics.get(k) == v for k, v in want.items())

    await wait_until(counted, within=30, what=lambda: repr(scrape(port)))

    sessions.write_text("[]")
    code, out = await worker
    assert code == 0, out[-3000:]
    assert '"kafka session ended"' in out
    assert '"kafka topic handed back"' in out
    topics = await list_topics(kafka_broker)
    assert alice not in topics
    assert fallback in topics  # --keep-fallback: the operator deletes it after the env restore

    committed = await group_offsets(kafka_broker, group, original)
    assert sum(committed.values()) == 40
    everything = await read_all(kafka_broker, original, PARTITIONS, expect=80)
    returned = [g for g in everything if g.offset >= committed[g.partition]]
    assert Counter(g.id for g in returned) == Counter(r.id for r in sent)


async def test_sigterm_mid_stream_commits_exactly_what_was_forwarded_and_exits_0(
    kafka_broker: KafkaBroker, unique_name: str, tmp_path: Path
) -> None:
    """Narrated:

    1. ``pymirror worker kafka`` splits a stream arriving at ~500/s.
    2. Mid-stream it gets SIGTERM: it stops fetching, waits for its forwards,
       commits and leaves the group; it exits 0 within a few seconds.
    3. Then the committed offsets name exactly the records that were
       forwarded: every record before them sits in its topic, no record after
       them does (a restart would neither lose nor repeat one).
    """
    original, fallback, alice = unique_name, f"{unique_name}-fb", f"{unique_name}-alice"
    group = f"{unique_name}-g"
    await create_topics(kafka_broker, PARTITIONS, original, fallback, alice)
    sessions = tmp_path / "sessions.json"
    sessions.write_text(
        sessions_json(
            {"id": "alice", "sequence": 1, "topic": alice, "message_filter": {"user": "^alice$"}}
        )
    )
    env = {**os.environ, "PYMIRROR_KAFKA__COMMIT_INTERVAL": "0.5"}
    proc = await asyncio.create_subprocess_exec(
        *worker_argv(kafka_broker, original, group, fallback, sessions),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    sent = make_records(3000, PARTITIONS, ["alice", "bob"])
    try:
        stopped_at = None
        for i in range(0, len(sent), 25):
            if stopped_at is not None and asyncio.get_running_loop().time() > stopped_at + 0.5:
                sent = sent[:i]  # the stream goes on a little past the signal, then stops
                break
            await produce(kafka_broker, original, sent[i : i + 25])
            await asyncio.sleep(0.05)
            # Mid-stream, once the worker has committed something.
            if (
                stopped_at is None
                and i >= 1000
                and await group_offsets(kafka_broker, group, original)
            ):
                proc.send_signal(signal.SIGTERM)
                stopped_at = asyncio.get_running_loop().time()
        assert stopped_at is not None, "the worker committed nothing while 3,000 records arrived"
        async with asyncio.timeout(30):
            out, _ = await proc.communicate()
        took = asyncio.get_running_loop().time() - stopped_at
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()[-3000:]
    assert took < 10

    committed = await group_offsets(kafka_broker, group, original)
    got = await read_all(kafka_broker, alice, PARTITIONS) + await read_all(
        kafka_broker, fallback, PARTITIONS
    )
    before = {r.id for r in everything_before(sent, committed)}
    assert 0 < len(before) < len(sent)  # stopped mid-stream, after some progress
    assert Counter(g.id for g in got) == Counter(before)


def everything_before(sent: list[Sent], committed: dict[int, int]) -> list[Sent]:
    """The records at offsets below the committed ones (produced in order, one producer)."""
    out, position = [], dict.fromkeys(committed, 0)
    for r in sent:
        if r.partition in committed and position[r.partition] < committed[r.partition]:
            out.append(r)
        position[r.partition] = position.get(r.partition, 0) + 1
    return out


async def test_sigterm_during_the_hand_back_wait_exits_and_the_next_start_resumes_it(
    kafka_broker: KafkaBroker, unique_name: str, tmp_path: Path
) -> None:
    """Narrated:

    1. ``pymirror worker kafka`` splits with one session (alice), no drain
       timeout; 20 records arrive: alice's 10 reach her topic, bob's 10 the
       fallback.
    2. The sessions file becomes ``[]``: alice's leftovers go to the fallback
       and the hand-back starts waiting for the workload to drain the fallback
       (nobody consumes it, so it would wait forever). The hand-back is
       recorded in the hand-back file (the default: beside the sessions file).
    3. SIGTERM: the process exits 0 within its bound, the hand-back unfinished.
    4. The same command starts again with ``--drain-timeout 0``: with the
       hand-back recorded it does not consume the original; it finishes the
       hand-back (the 20 fallback records go back to the original), deletes
       the fallback and alice's topic, and exits 0.
    """
    original, fallback, alice = unique_name, f"{unique_name}-fb", f"{unique_name}-alice"
    group = f"{unique_name}-g"
    await create_topics(kafka_broker, PARTITIONS, original, fallback, alice)
    sessions = tmp_path / "sessions.json"
    sessions.write_text(
        sessions_json(
            {"id": "alice", "sequence": 1, "topic": alice, "message_filter": {"user": "^alice$"}}
        )
    )
    hand_back = tmp_path / "sessions.json.hand-back"
    argv = worker_argv(kafka_broker, original, group, fallback, sessions)
    env = {**os.environ, "PYMIRROR_KAFKA__COMMIT_INTERVAL": "0.1"}
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        sent = make_records(20, PARTITIONS, ["alice", "bob"])
        await produce(kafka_broker, original, sent)
        await read_all(kafka_broker, alice, PARTITIONS, expect=10)
        await read_all(kafka_broker, fallback, PARTITIONS, expect=10)
        sessions.write_text("[]")
        await wait_until(hand_back.exists, within=60, what=lambda: "no hand-back file")
        await read_all(kafka_broker, fallback, PARTITIONS, expect=20)  # alice's leftovers
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, out.decode()[-3000:]
    assert hand_back.exists()  # unfinished: still recorded
    assert fallback in await list_topics(kafka_broker)

    code, out2 = await run_worker([*argv, "--drain-timeout", "0"], within=90)
    assert code == 0, out2[-3000:]
    assert not hand_back.exists()
    topics = await list_topics(kafka_broker)
    assert fallback not in topics
    assert alice not in topics
    committed = await group_offsets(kafka_broker, group, original)
    assert sum(committed.values()) == 20
    everything = await read_all(kafka_broker, original, PARTITIONS, expect=40)
    returned = [g for g in everything if g.offset >= committed[g.partition]]
    assert Counter(g.id for g in returned) == Counter(r.id for r in sent)
