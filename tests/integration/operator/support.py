"""Helpers shared by the operator's integration tests (the fixtures are in conftest.py).

Two kinds of test use them: those that drive ``pymirror.operator.splits`` directly and
play the Deployment controller and the worker (test_splits.py, test_kafka_splits.py:
:func:`app_body`, :func:`roll_out`, :func:`drive`), and those that run the whole
operator with the local runtime (test_operator.py, test_second_session.py,
test_recovery.py, test_recovery_kafka.py, test_e2e.py, test_bad_input.py:
:func:`operator_settings`, :func:`operating`, :func:`session_body`, :func:`watch_session`;
their worlds extend :class:`Cluster`, the ``cluster`` fixture; :func:`kafka_app` is their
Kafka app, and :func:`operator_process` / :func:`killed_at` run ``pymirror operator`` as
a process, with a kill point if asked). :func:`runtime_config` and :func:`runtime_running`
run the local runtime (the ``local_runtime`` fixture, the chart's operator test);
:func:`registry_body` and :func:`queue_split_body` are the bodies the tests vary. Every
wait is on a watched change or on the broker's state; ``HANG`` only bounds a hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from prometheus_client import CollectorRegistry

from pymirror.operator.controller import Controller, build
from pymirror.operator.fault_points import KILL_AT_VAR
from pymirror.operator.planning import SessionPlan
from pymirror.operator.settings import OperatorSettings
from pymirror.operator.splits import Joined, Splits
from pymirror.sandbox.pods import RestartPolicy
from pymirror.sandbox.runtime import LocalRuntime, RuntimeConfig
from pymirror.sandbox.workloads import STAND_IN_KINDS, Kind
from pymirror.settings import Settings
from registry.errors import NotFoundError
from registry.models import API_VERSION as MODELS_API_VERSION
from registry.models import MirrordKafkaClientConfig, MirrordKafkaTopicsConsumer
from registry.objects import Kube, Obj, Objects
from registry.resources import Resource
from registry.session_models import QueueSplit, SplitSession
from splitter.sqs.client import SqsClient
from splitter.sqs.settings import SqsSettings
from tests.integration.kafka.support import create_topics
from tests.integration.sqs.support import make_queue
from tests.servers.kafka import KafkaBroker, group_timeouts
from tests.servers.kube import KubeApi
from tests.servers.process import REPO
from tests.servers.sqs import SqsEndpoint

T = TypeVar("T")
C = TypeVar("C", bound="Cluster")

#: Bounds a hang only (each wait ends on the state it waits for).
HANG = 150.0
APP = "meme-app"
DEPLOYMENTS = STAND_IN_KINDS.deployment
STATEFUL_SETS = STAND_IN_KINDS.stateful_set
REGISTRIES = Resource("queues.mirrord.metalbear.co", "v1alpha", "mirrordworkloadqueueregistries")
MEME_VAR, AD_VAR = "INCOMING_MEME_QUEUE_NAME", "AD_QUEUE_NAME"
#: A workload container that runs until SIGTERM and reads nothing.
IDLE = [
    sys.executable,
    "-c",
    "import signal; signal.signal(signal.SIGTERM, lambda *a: exit(0)); signal.pause()",
]


class InNamespaces:
    """The objects of a test's two namespaces (a base of the tests' ``World`` dataclasses,
    which declare these three fields)."""

    kube: Kube
    namespace: str
    operator_namespace: str

    @property
    def queue_splits(self) -> Objects:
        return self.kube.objects(QueueSplit.RESOURCE, self.operator_namespace)

    @property
    def deployments(self) -> Objects:
        return self.kube.objects(DEPLOYMENTS, self.namespace)

    @property
    def workers(self) -> Objects:
        return self.kube.objects(DEPLOYMENTS, self.operator_namespace)


class WithSessions(InNamespaces):
    """:class:`InNamespaces` and the test's SplitSessions, the QueueSplits also as
    ``splits`` (for worlds whose ``splits`` is not a ``Splits``: the whole operator's)."""

    @property
    def sessions(self) -> Objects:
        return self.kube.objects(SplitSession.RESOURCE, self.namespace)

    @property
    def splits(self) -> Objects:
        return self.queue_splits


@dataclass
class Cluster(WithSessions):
    """A test's servers and clients and its two namespaces, whose workloads the local
    runtime runs (the ``cluster`` fixture); the whole-operator tests' worlds extend it."""

    kube: Kube
    kube_api: KubeApi
    sqs: SqsClient
    moto: SqsEndpoint
    namespace: str
    operator_namespace: str

    def extended(self, world: type[C], **fields: Any) -> C:
        """This cluster as a ``world`` (a subclass), with the ``fields`` it adds."""
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(Cluster)}
        return world(**own, **fields)

    def operator_settings(self, **overrides: Any) -> Settings:
        """:func:`operator_settings` for this cluster."""
        return operator_settings(self.kube_api, self.moto, self.operator_namespace, **overrides)

    def operating(
        self, settings: Settings | None = None, registry: CollectorRegistry | None = None
    ) -> contextlib.AbstractAsyncContextManager[Controller]:
        """:func:`operating` for this cluster's namespace (default: :meth:`operator_settings`)."""
        return operating(self.kube, settings or self.operator_settings(), self.namespace, registry)


def runtime_config(
    namespaces: Sequence[str],
    tmp_path: Path,
    watch_kinds: Sequence[Kind] = ("Deployment", "StatefulSet"),
) -> RuntimeConfig:
    """The local runtime's config for the tests: the stand-in kinds of ``namespaces``,
    logs and process groups under ``tmp_path``, quick restarts."""
    return RuntimeConfig(
        namespaces=list(namespaces),
        log_dir=tmp_path / "pods",
        kinds=STAND_IN_KINDS,
        watch_kinds=watch_kinds,
        groups_dir=tmp_path / "groups",
        restart=RestartPolicy(first=0.2, ceiling=1.0),
    )


@contextlib.asynccontextmanager
async def runtime_running(kube: Kube, config: RuntimeConfig) -> AsyncIterator[LocalRuntime]:
    """The local runtime running (and ready) for the block."""
    runtime = LocalRuntime(kube, config)
    async with running(runtime.run):
        await bounded(runtime.ready.wait())
        yield runtime


def splits_settings(operator_namespace: str) -> OperatorSettings:
    """The operator settings of the splits tests (no worker runs, no metrics port)."""
    return OperatorSettings(
        namespace=operator_namespace,
        workload_kinds={
            "Deployment": DEPLOYMENTS.api_version,
            "StatefulSet": STATEFUL_SETS.api_version,
        },
        worker_metrics_port=None,
        workload_restart_timeout=60.0,
    )


async def bounded(awaitable: Awaitable[T], seconds: float = HANG) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


def app_body(
    env: list[dict[str, Any]],
    *,
    name: str = "app",
    kind: str = "Deployment",
    image: str = "app:1",
    command: list[str] | None = None,
) -> Obj:
    """A workload of the stand-in ``kind`` with one container ``main`` and ``env``;
    with ``command`` the local runtime runs it (a 5 s grace period)."""
    container: Obj = {"name": "main", "image": image, "env": env}
    pod: Obj = {"containers": [container]}
    if command is not None:
        container["command"] = command
        pod["terminationGracePeriodSeconds"] = 5
    spec: Obj = {
        "replicas": 1,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": pod},
    }
    api = STATEFUL_SETS if kind == "StatefulSet" else DEPLOYMENTS
    return {"apiVersion": api.api_version, "kind": kind, "metadata": {"name": name}, "spec": spec}


def queue_split_body(
    name: str,
    original: str = "orders",
    *,
    target: str = "app",
    namespace: str = "shop",
    api_version: str = "apps/v1",
    **spec: Any,
) -> Obj:
    """A QueueSplit of SQS queue ``original`` for Deployment ``namespace/target``, with
    the other ``spec`` fields given (fallback, routes, ...)."""
    return {
        "apiVersion": "pymirror.dev/v1alpha1",
        "kind": "QueueSplit",
        "metadata": {"name": name},
        "spec": {
            "kind": "SQS",
            "original": original,
            "target": {
                "apiVersion": api_version,
                "kind": "Deployment",
                "name": target,
                "namespace": namespace,
            },
            **spec,
        },
    }


def container_env(app: Obj) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = app["spec"]["template"]["spec"]["containers"][0].get("env") or []
    return env


# --- playing the Deployment controller and the worker (the splits tests) ---------------------


async def roll_out(deployments: Objects) -> bool:
    """What the Deployment controller writes once every replica runs the current template
    (for each workload of ``deployments`` not rolled out); whether there was one."""
    wrote = False
    for obj in (await deployments.list()).items:
        generation = obj["metadata"]["generation"]
        if (obj.get("status") or {}).get("observedGeneration") == generation:
            continue
        status = {
            "observedGeneration": generation,
            "replicas": 1,
            "updatedReplicas": 1,
            "readyReplicas": 1,
            "availableReplicas": 1,
        }
        await deployments.patch_status(obj["metadata"]["name"], status)
        wrote = True
    return wrote


async def drive(
    splits: Splits,
    plans: Sequence[SessionPlan],
    sequences: Sequence[int],
    *,
    roll: Callable[[], Awaitable[object]],
    acknowledge: Callable[[str], Awaitable[None]],
    hang: float = HANG,
) -> list[Joined]:
    """Join every plan at once until all are ready, playing the controller (``roll``) and
    the worker (``acknowledge(split)``) whenever a join waits for them."""
    steps: list[str] = []
    for _ in range(8):
        results = await bounded(
            asyncio.gather(
                *(splits.join(p, p.queues[0], s) for p, s in zip(plans, sequences, strict=True))
            ),
            hang,
        )
        if all(j.ready for j in results):
            return list(results)
        steps += [j.step for j in results]
        if any(j.step.startswith("waiting for the rollout") for j in results):
            await roll()
        if any(j.step.startswith("waiting for the worker") for j in results):
            await acknowledge(plans[0].queues[0].split)
    raise AssertionError(f"the joins did not become ready; steps: {steps}")


async def hand_back(
    splits: Splits, split: str, roll: Callable[[], Awaitable[object]], hang: float = HANG
) -> None:
    """``reconcile_split`` while playing the Deployment controller for the restore."""
    task = asyncio.create_task(splits.reconcile_split(split))
    while not task.done():
        await roll()
        await asyncio.wait({task}, timeout=0.1)
    await bounded(task, hang)


# --- the whole operator ----------------------------------------------------------------------


def app_deployment(memes: str, ads: str) -> Obj:
    env = [{"name": MEME_VAR, "value": memes}, {"name": AD_VAR, "value": ads}]
    return app_body(env, name=APP, image="local", command=IDLE)


def registry_body(name: str, queues: dict[str, Obj], *, workload_type: str = "Deployment") -> Obj:
    """A MirrordWorkloadQueueRegistry of the app's container ``main`` with ``queues``."""
    return {
        "apiVersion": f"{REGISTRIES.group}/{REGISTRIES.version}",
        "kind": "MirrordWorkloadQueueRegistry",
        "metadata": {"name": name},
        "spec": {
            "queues": queues,
            "consumer": {"name": APP, "container": "main", "workloadType": workload_type},
        },
    }


def sqs_in(env_var: str) -> Obj:
    """A registry queue: the SQS queue named by ``env_var``."""
    return {"queueType": "SQS", "nameSource": {"envVar": env_var}}


def meme_registry() -> Obj:
    """The meme app's queue registry, as examples/meme-app/queue-registry.yaml has it."""
    registry: Obj = yaml.safe_load((REPO / "examples/meme-app/queue-registry.yaml").read_text())
    return registry


async def meme_app(kube: Kube, sqs: SqsClient, namespace: str) -> str:
    """The meme app's queues on moto, its Deployment and its registry (the example's);
    the meme queue's URL."""
    memes = await make_queue(sqs, f"memes-{namespace}")
    ads = await make_queue(sqs, f"ads-{namespace}")
    await kube.objects(DEPLOYMENTS, namespace).create(
        app_deployment(memes.rpartition("/")[2], ads.rpartition("/")[2])
    )
    await kube.objects(REGISTRIES, namespace).create(meme_registry())
    return memes


KAFKA_TOPIC_VAR, KAFKA_GROUP_VAR = "TOPIC", "GROUP"
KAFKA_CONFIG = "kafka-main"
#: The topic's id in the Kafka app's MirrordKafkaTopicsConsumer (a session's queue id).
KAFKA_TOPIC_ID = "views-topic"


async def kafka_app(
    kube: Kube,
    broker: KafkaBroker,
    namespaces: tuple[str, str],
    *,
    original: str,
    group: str,
    partitions: int,
    kind: str = "Deployment",
) -> Obj:
    """A Kafka app (a ``kind``) as the operator splits it: topic ``original`` on ``broker``; the
    operator namespace's MirrordKafkaClientConfig ``KAFKA_CONFIG`` (the broker, earliest
    for a partition the group never committed, the broker's test group timeouts); the idle
    Deployment ``app`` naming the topic and ``group`` in its env; its
    MirrordKafkaTopicsConsumer with the topic as ``KAFKA_TOPIC_ID``. The app as created."""
    namespace, operator_namespace = namespaces
    await create_topics(broker, partitions, original)
    timeouts = group_timeouts(broker.kind)
    properties = {
        "bootstrap.servers": broker.bootstrap,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": str(timeouts["session_timeout_ms"]),
        "heartbeat.interval.ms": str(timeouts["heartbeat_interval_ms"]),
    }
    await kube.objects(MirrordKafkaClientConfig.RESOURCE, operator_namespace).create(
        {
            "apiVersion": MODELS_API_VERSION,
            "kind": "MirrordKafkaClientConfig",
            "metadata": {"name": KAFKA_CONFIG},
            "spec": {"properties": [{"name": k, "value": v} for k, v in properties.items()]},
        }
    )
    env = [{"name": KAFKA_TOPIC_VAR, "value": original}, {"name": KAFKA_GROUP_VAR, "value": group}]
    api = STATEFUL_SETS if kind == "StatefulSet" else DEPLOYMENTS
    app = await kube.objects(api, namespace).create(
        app_body(env, name="app", kind=kind, image="local", command=IDLE)
    )
    source = {"container": "main"}
    topic = {
        "id": KAFKA_TOPIC_ID,
        "clientConfig": KAFKA_CONFIG,
        "groupIdSources": [{"directEnvVar": {**source, "variable": KAFKA_GROUP_VAR}}],
        "nameSources": [{"directEnvVar": {**source, "variable": KAFKA_TOPIC_VAR}}],
    }
    await kube.objects(MirrordKafkaTopicsConsumer.RESOURCE, namespace).create(
        {
            "apiVersion": MODELS_API_VERSION,
            "kind": "MirrordKafkaTopicsConsumer",
            "metadata": {"name": "app-topics-consumer"},
            "spec": {
                "consumerApiVersion": api.api_version,
                "consumerKind": kind,
                "consumerName": "app",
                "topics": [topic],
            },
        }
    )
    return app


def session_body(
    name: str,
    queue_id: str = "meme-queue",
    *,
    lease: int = 30,
    target: str = APP,
    kind: str = "SQS",
    workload_kind: str = "Deployment",
    message_filter: dict[str, str] | None = None,
) -> Obj:
    api = STATEFUL_SETS if workload_kind == "StatefulSet" else DEPLOYMENTS
    queue: Obj = {
        "id": queue_id,
        "kind": kind,
        "messageFilter": message_filter or {"author": f"^{name}$"},
    }
    return {
        "apiVersion": "pymirror.dev/v1alpha1",
        "kind": "SplitSession",
        "metadata": {"name": name},
        "spec": {
            "target": {
                "apiVersion": api.api_version,
                "kind": workload_kind,
                "name": target,
                "container": "main",
            },
            "owner": {"username": name, "hostname": "laptop", "k8sUsername": f"{name}@example.com"},
            "queues": [queue],
            "leaseSeconds": lease,
        },
    }


def operator_settings(
    kube_api: KubeApi,
    sqs_endpoint: SqsEndpoint,
    operator_namespace: str,
    **overrides: Any,
) -> Settings:
    """The operator's settings for the sandbox's stand-in kinds, its workers run as local
    ``python -m pymirror worker`` processes against moto."""
    worker_env = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": sqs_endpoint.region,
        "KUBECONFIG": str(kube_api.kubeconfig),
        "PYMIRROR_SQS__ENDPOINT_URL": sqs_endpoint.url,
        "PYMIRROR_SQS__REGION": sqs_endpoint.region,
        "PYMIRROR_SQS__WAIT_SECONDS": "1",
        "PYMIRROR_SQS__DRAIN_POLL": "0.2",
        "PYMIRROR_SQS__SHUTDOWN_GRACE": "5",
        "PYMIRROR_LOG__FORMAT": "json",
        "PYTHONPATH": str(REPO),
    }
    fields: dict[str, Any] = {
        "namespace": operator_namespace,
        "workload_kinds": {
            "Deployment": DEPLOYMENTS.api_version,
            "StatefulSet": STATEFUL_SETS.api_version,
        },
        "config_kinds": {"ConfigMap": "core.pymirror.test/v1", "Secret": "core.pymirror.test/v1"},
        "worker_command": [sys.executable, "-m", "pymirror"],
        "worker_env": worker_env,
        "worker_metrics_port": None,
        "workload_restart_timeout": 60.0,
        "resync_seconds": 5.0,
    }
    operator = OperatorSettings(**(fields | overrides))
    sqs = SqsSettings(endpoint_url=sqs_endpoint.url, region=sqs_endpoint.region)
    return Settings(sqs=sqs, operator=operator)


@contextlib.asynccontextmanager
async def running(task_factory: Callable[[], Any]) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.create_task(task_factory())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def operating(
    kube: Kube,
    settings: Settings,
    namespace: str,
    registry: CollectorRegistry | None = None,
) -> AsyncIterator[Controller]:
    """The controller (the wiring of ``pymirror operator``) running for ``namespace`` in
    this event loop; on exit the sessions left are deleted and waited for (the operator
    still runs, so the workers and the hand-backs finish), then it stops."""
    controller = build(
        kube, settings, namespaces=[namespace], registry=registry or CollectorRegistry()
    )
    stop = asyncio.Event()
    async with running(lambda: controller.run(stop)) as task:
        await bounded(controller.started.wait())
        yield controller
        await cleanup(kube, namespace, settings.operator.namespace)
        stop.set()
        await bounded(task)


def operator_process_env(
    cluster: Cluster, settings: Settings, kill_at: str | None
) -> dict[str, str]:
    """``pymirror operator``'s environment: ``settings.operator`` as one JSON (which also
    unsets worker_metrics_port), the cluster's moto, JSON logs, and the kill point if any
    (``PYMIRROR_OPERATOR_KILL_AT``, pymirror/operator/fault_points.py)."""
    env = {k: v for k, v in os.environ.items() if k != KILL_AT_VAR}
    env |= {
        "PYMIRROR_OPERATOR": json.dumps(settings.operator.model_dump(mode="json")),
        "PYMIRROR_SQS__ENDPOINT_URL": cluster.moto.url,
        "PYMIRROR_SQS__REGION": cluster.moto.region,
        "PYMIRROR_LOG__FORMAT": "json",
    }
    if kill_at is not None:
        env[KILL_AT_VAR] = kill_at
    return env


@contextlib.asynccontextmanager
async def operator_process(
    cluster: Cluster, settings: Settings, log: Path, kill_at: str | None = None
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``pymirror operator`` as a process for the cluster's namespace, its output in
    ``log``; stopped with SIGTERM on exit if still running (SIGKILL after ``HANG``)."""
    command = [sys.executable, "-m", "pymirror", "operator", "--namespace", cluster.namespace]
    command += ["--kubeconfig", str(cluster.kube_api.kubeconfig)]
    env = operator_process_env(cluster, settings, kill_at)
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                try:
                    await bounded(process.wait())
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def killed_at(process: asyncio.subprocess.Process, log: Path, point: str) -> None:
    """Until the operator exited; it must have SIGKILLed itself at fault point ``point``
    (and at no other)."""
    await bounded(process.wait())
    output = await asyncio.to_thread(log.read_text)
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    reached = [json.loads(line) for line in output.splitlines() if "fault point reached" in line]
    assert [r.get("point") for r in reached] == [point], output[-3000:]


async def cleanup(kube: Kube, namespace: str, operator_namespace: str) -> None:
    """Delete the sessions left and wait until they and their splits are gone (the
    operator still runs), so the workers and the app stop."""
    sessions = kube.objects(SplitSession.RESOURCE, namespace)
    for obj in (await sessions.list()).items:
        await sessions.delete(obj["metadata"]["name"], missing_ok=True)
    async with asyncio.timeout(HANG):
        await wait_empty(sessions)
        await wait_empty(kube.objects(QueueSplit.RESOURCE, operator_namespace))


async def wait_empty(objects: Objects) -> None:
    """Until ``objects`` lists nothing (watched)."""
    listed = await objects.list()
    names = {o["metadata"]["name"] for o in listed.items}
    if not names:
        return
    async with objects.watch(resource_version=listed.resource_version) as w:
        async for event in w:
            if event.type == "DELETED":
                names.discard(event.name)
            else:
                names.add(event.name)
            if not names:
                return


async def watch_session(
    sessions: Objects,
    name: str,
    check: Callable[[Obj | None], bool],
    seen: list[dict[str, Any]] | None = None,
) -> Obj | None:
    """The first state of session ``name`` (current, then watched; None = gone) for which
    ``check`` holds; every status seen is appended to ``seen``."""
    seen = [] if seen is None else seen
    try:
        obj: Obj | None = await sessions.get(name)
    except NotFoundError:
        obj = None
    async with asyncio.timeout(HANG):
        if obj is not None:
            seen.append(obj.get("status") or {})
        if check(obj):
            return obj
        version = obj["metadata"]["resourceVersion"] if obj is not None else None
        async with sessions.watch(
            resource_version=version, field_selector=f"metadata.name={name}"
        ) as w:
            async for event in w:
                current = None if event.type == "DELETED" else event.object
                if current is not None:
                    seen.append(current.get("status") or {})
                if check(current):
                    return current
    raise AssertionError("the watch ended")


def phase_is(*phases: str) -> Callable[[Obj | None], bool]:
    return lambda obj: obj is not None and (obj.get("status") or {}).get("phase") in phases


def gone(obj: Obj | None) -> bool:
    return obj is None


async def settled(sessions: Objects, name: str) -> Obj:
    """Session ``name`` once Ready or Failed."""
    obj = await watch_session(sessions, name, phase_is("Ready", "Failed"))
    assert obj is not None
    return obj
