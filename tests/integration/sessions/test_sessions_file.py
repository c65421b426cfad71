"""A running worker process and its sessions file: bad rewrites keep the sessions.

Both workers (``pymirror worker kafka`` on noida-db and Tansu, ``pymirror worker
sqs`` on moto) start with one session, alice. Then the sessions file is
rewritten in place the way a careless editor or a crash does it, and each
version is checked to keep alice's session (her messages still reach her
queue/topic, the process keeps running):

1. the file truncated to nothing (a non-atomic rewrite caught half-way);
2. ``1.2`` and ``1.7`` as sequences (both would be 1: the router could not
   order them);
3. alice's destination set to the fallback (her messages would come back to
   the worker forever).

Only then does ``[]`` end the session, and the worker hands back and exits 0.
Every wait is on the worker's own log (it names each version it refused) or on
messages arriving; the test fails at once if the worker exits early.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.kafka.support import create_topics, make_records, produce, read_all
from tests.integration.kafka.support import worker_argv as kafka_argv
from tests.integration.sqs.support import (
    Outgoing,
    attribute,
    client_for,
    drain,
    make_queue,
    process_env,
    send,
    temporary,
    worker_command,
)
from tests.servers.kafka import KafkaBroker
from tests.servers.process import REPO
from tests.servers.sqs import SqsEndpoint

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

PARTITIONS = 2
UNUSABLE = "sessions file unusable, keeping the current sessions"


class Worker:
    """A worker process whose output goes to ``log``; waits read that log."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env=env
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"the worker exited ({code}):\n{self.text()[-4000:]}"

    async def logged(self, text: str, times: int = 1) -> None:
        """Until the log holds ``text`` ``times`` times; fails if the worker exits first."""
        while self.text().count(text) < times:
            self.alive()
            await asyncio.sleep(0.05)

    async def exit_code(self) -> int:
        return await asyncio.to_thread(self.proc.wait)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def session(session_id: str, sequence: Any, destination_key: str, destination: str) -> Any:
    return {
        "id": session_id,
        "sequence": sequence,
        destination_key: destination,
        "message_filter": {"user": f"^{session_id}$"},
    }


def rewrite(path: Path, text: str) -> None:
    """In place, as an editor without atomic saves does: truncate, then write."""
    with path.open("w") as f:
        f.write(text)


async def bad_rewrites(worker: Worker, sessions: Path, key: str, alice: str, fallback: str) -> None:
    """The three unusable versions of the narrative, each seen and refused by the worker."""
    rewrite(sessions, "")
    await worker.logged(UNUSABLE, 1)
    rewrite(
        sessions,
        json.dumps([session("alice", 1.2, key, alice), session("bob", 1.7, key, f"{alice}-b")]),
    )
    await worker.logged(UNUSABLE, 2)
    rewrite(sessions, json.dumps([session("alice", 1, key, fallback)]))
    await worker.logged("sessions not applied")
    assert "is the fallback" in worker.text()
    worker.alive()


async def test_the_kafka_worker_keeps_its_sessions_through_bad_rewrites_until_an_empty_list(
    kafka_broker: KafkaBroker, unique_name: str, tmp_path: Path
) -> None:
    original, fallback, alice = unique_name, f"{unique_name}-fb", f"{unique_name}-alice"
    await create_topics(kafka_broker, PARTITIONS, original, fallback, alice)
    sessions = tmp_path / "sessions.json"
    sessions.write_text(json.dumps([session("alice", 1, "topic", alice)]))
    argv = kafka_argv(
        kafka_broker,
        original,
        f"{unique_name}-g",
        fallback,
        sessions,
        "--drain-timeout",
        "0",
        "--keep-fallback",
    )
    env = {**os.environ, "PYMIRROR_KAFKA__COMMIT_INTERVAL": "0.1"}
    worker = Worker(argv, tmp_path / "worker.log", env)
    try:
        first = make_records(10, PARTITIONS, ["alice", "bob"])
        await produce(kafka_broker, original, first)
        got = await read_all(kafka_broker, alice, PARTITIONS, expect=5, within=300)
        assert len(got) == 5

        await bad_rewrites(worker, sessions, "topic", alice, fallback)

        later = make_records(10, PARTITIONS, ["alice", "bob"], start=10)
        await produce(kafka_broker, original, later)
        got = await read_all(kafka_broker, alice, PARTITIONS, expect=10, within=300)
        alice_ids = [r.id for r in [*first, *later] if dict(r.headers)["user"] == b"alice"]
        assert sorted(g.id for g in got) == alice_ids  # still alice's, after every bad version
        worker.alive()

        rewrite(sessions, "[]")
        assert await worker.exit_code() == 0, worker.text()[-4000:]
        assert '"kafka topic handed back"' in worker.text()
    finally:
        worker.kill()


async def test_the_sqs_worker_keeps_its_sessions_through_bad_rewrites_until_an_empty_list(
    moto_endpoint: SqsEndpoint, unique_name: str, tmp_path: Path
) -> None:
    async with client_for(moto_endpoint) as sqs:
        original = await make_queue(sqs, unique_name)
        # The worker works only with queues pymirror made for this split.
        fallback = await temporary(sqs, original)
        alice = await temporary(sqs, original, "alice")
        sessions = tmp_path / "sessions.json"
        sessions.write_text(json.dumps([session("alice", 1, "queue", alice)]))
        argv = worker_command(moto_endpoint, original, fallback, sessions, "--drain-timeout", "0")
        env = process_env(moto_endpoint, PYMIRROR_SQS__WAIT_SECONDS="1")
        worker = Worker(argv, tmp_path / "worker.log", env)
        try:

            def message(mid: str) -> Outgoing:
                return Outgoing(mid, {"user": attribute("alice")})

            await send(sqs, original, [message("m1")])
            got = await drain(sqs, {"alice": alice}, expect=1, within=300)
            assert [m["MessageAttributes"]["mid"]["StringValue"] for m in got["alice"]] == ["m1"]

            await bad_rewrites(worker, sessions, "queue", alice, fallback)

            await send(sqs, original, [message("m2")])
            got = await drain(sqs, {"alice": alice}, expect=1, within=300)
            assert [m["MessageAttributes"]["mid"]["StringValue"] for m in got["alice"]] == ["m2"]
            worker.alive()

            rewrite(sessions, "[]")
            assert await worker.exit_code() == 0, worker.text()[-4000:]
        finally:
            worker.kill()
