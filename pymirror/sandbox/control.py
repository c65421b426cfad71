"""``pymirror sandbox up|down``: a local stand-in cluster with SQS and Kafka.

``up`` starts, on free loopback ports, each as a process group of its own that
outlives the command:

1. etcd and the apiextensions-apiserver (built first when missing), with a
   throw-away CA and client certificate; every CRD of pymirror and the stand-in
   workload kinds installed and Established;
2. a moto server (SQS);
3. a Kafka broker, unless ``kafka=False``: noida-db (``kafka_broker="noida"``, the
   default) or Tansu (``"tansu"``, in-memory storage; it expires consumer-group
   members that die without leaving, which noida-db 0.2.0 never does);
4. the local runtime (stand-in for the kubelet and the Deployment controller),
   watching the stand-in Deployments, StatefulSets and Rollouts in the demo namespaces
   and the operator's namespace (where the split-worker Deployments go);
5. the operator (``pymirror operator``, settings from ``pymirror.sandbox.operator``),
   watching SplitSessions in the demo namespaces, unless ``operator=False``;

and writes into the state directory ``state.json`` (pids, start times, ports,
URLs), ``kubeconfig`` and ``env`` (``export`` lines). ``down`` stops them in
reverse order (SIGTERM to each group, SIGKILL after a grace period), reaps any
container process the runtime left, checks the ports are free and removes
everything in the state directory except ``logs/``. A second ``up`` finds the
sandbox running and says so; ``up`` after a reboot (every recorded process gone)
starts afresh. A file lock serializes ``up`` and ``down`` on one state directory.

The state directory (and ``env``'s lines) is ``state``; starting a process and
waiting for it is ``spawning``; the binaries and CRDs are ``provisioning``; ``status``
probes a running sandbox.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pymirror.sandbox import assets
from pymirror.sandbox.errors import SandboxError
from pymirror.sandbox.groups import GroupRecords
from pymirror.sandbox.kube_server import (
    apiserver_argv,
    apiserver_live,
    client_context,
    etcd_argv,
    etcd_healthy,
    write_kubeconfig,
    write_pki,
)
from pymirror.sandbox.operator import (
    DEFAULT_NAMESPACE,
    operator_argv,
    operator_env,
    operator_settings,
    operator_started,
)
from pymirror.sandbox.probes import kafka_api_versions_ok, moto_ready, port_open
from pymirror.sandbox.progress import Progress
from pymirror.sandbox.provisioning import ensure_kube_binaries, install_crds
from pymirror.sandbox.spawning import on_free_ports, spawn
from pymirror.sandbox.state import STATE_FILE, Component, State, clean, env_lines, locked
from pymirror.sandbox.workloads import KINDS, STAND_IN_KINDS

REGION = "us-east-1"
KAFKA_BROKERS = ("noida", "tansu")


# --- up ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path
    namespaces: Sequence[str] = ("default",)
    kafka: bool = True
    kafka_broker: str = "noida"
    """Which Kafka broker (``KAFKA_BROKERS``): noida-db or Tansu."""
    operator: bool = True
    operator_namespace: str = DEFAULT_NAMESPACE
    """Where the operator keeps its QueueSplits and worker Deployments."""
    timeout: float = 120.0
    """Seconds each component may take to become ready."""


def up(options: UpOptions, progress: Progress | None = None) -> tuple[State, bool]:
    """Bring the sandbox up; (its state, False if it was already up)."""
    progress = progress or Progress()
    if options.kafka_broker not in KAFKA_BROKERS:
        raise SandboxError(
            f"unknown Kafka broker {options.kafka_broker!r}; use one of {', '.join(KAFKA_BROKERS)}"
        )
    if options.kafka:  # a missing broker binary fails before anything is started
        _kafka_binary(options.kafka_broker)
    state_dir = options.state_dir.resolve()
    with locked(state_dir):
        existing = State.load(state_dir)
        if existing is not None:
            alive = {c.name: c.group.alive() for c in existing.components}
            if all(alive.values()):
                progress(f"already up (state dir {state_dir})")
                return existing, False
            if any(alive.values()):
                dead = sorted(n for n, ok in alive.items() if not ok)
                raise SandboxError(
                    f"the sandbox in {state_dir} is partly running (not running: "
                    f"{', '.join(dead)}); run `pymirror sandbox down` first"
                )
            progress("the recorded sandbox processes are gone (a reboot?): starting afresh")
            clean(state_dir)
        state = State(
            str(state_dir),
            namespaces=list(options.namespaces),
            operator_namespace=options.operator_namespace if options.operator else None,
            kafka_broker=options.kafka_broker if options.kafka else None,
        )
        try:
            _start(state, options, progress)
        except BaseException:
            progress("start-up failed: stopping what was started")
            _stop_all(state, progress)
            clean(state_dir)
            raise
        progress(f"up in {time.monotonic() - progress.start:.1f} s; state in {state_dir}")
        return state, True


def _start(state: State, options: UpOptions, progress: Progress) -> None:
    state_dir = Path(state.state_dir)
    logs = state_dir / "logs"
    if logs.exists():
        shutil.rmtree(logs)
    cache = assets.cache_dir()
    etcd_bin, apiserver_bin = ensure_kube_binaries(cache, progress)
    timeout = options.timeout

    progress("starting etcd")

    def etcd(ports: list[int]) -> Component:
        url = f"http://127.0.0.1:{ports[0]}"
        data = state_dir / "etcd"
        shutil.rmtree(data, ignore_errors=True)
        argv = etcd_argv(etcd_bin, data, ports[0], ports[1])
        ready = functools.partial(etcd_healthy, url)
        return spawn("etcd", argv, logs, ready=ready, timeout=timeout, port=ports[0], url=url)

    etcd_component = on_free_ports(2, etcd)
    state.components.append(etcd_component)
    state.save()
    assert etcd_component.url is not None
    etcd_url = etcd_component.url

    progress("starting apiextensions-apiserver")
    pki = write_pki(state_dir / "pki")
    context = client_context(pki)

    def apiserver(ports: list[int]) -> Component:
        url = f"https://127.0.0.1:{ports[0]}"
        argv = apiserver_argv(apiserver_bin, etcd_url, ports[0], pki, state_dir / "apiserver")
        ready = functools.partial(apiserver_live, url, context)
        return spawn("apiserver", argv, logs, ready=ready, timeout=timeout, port=ports[0], url=url)

    api = on_free_ports(1, apiserver)
    state.components.append(api)
    state.save()
    assert api.url is not None
    kubeconfig = state_dir / "kubeconfig"
    write_kubeconfig(kubeconfig, api.url, pki, namespace=options.namespaces[0])
    crds = install_crds(kubeconfig, assets.crd_files(), timeout=timeout)
    progress(f"installed {len(crds)} CRDs (pymirror's and the stand-in workload kinds)")

    progress("starting moto (SQS)")

    def moto(ports: list[int]) -> Component:
        url = f"http://127.0.0.1:{ports[0]}"
        argv = assets.moto_argv(ports[0])
        ready = functools.partial(moto_ready, url)
        return spawn("moto", argv, logs, ready=ready, timeout=timeout, port=ports[0], url=url)

    sqs = on_free_ports(1, moto)
    state.components.append(sqs)
    state.save()
    assert sqs.url is not None

    env = {
        "KUBECONFIG": str(kubeconfig),
        "AWS_ENDPOINT_URL": sqs.url,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "PYMIRROR_SQS__ENDPOINT_URL": sqs.url,
        "PYMIRROR_SQS__REGION": REGION,
    }
    if options.kafka:
        kafka = _kafka_starter(options.kafka_broker, state_dir, logs, timeout, progress)
        broker = on_free_ports(1, kafka)
        state.components.append(broker)
        assert broker.url is not None
        env["KAFKA_BOOTSTRAP_SERVERS"] = broker.url
    state.env = env
    state.save()

    progress("starting the local runtime (stand-in for the kubelet and Deployment controller)")
    ready_file = state_dir / "runtime.ready"
    ready_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "pymirror", "--log-format", "json", "sandbox", "runtime"]
    argv += ["--kubeconfig", str(kubeconfig), "--log-dir", str(logs / "pods")]
    argv += ["--groups-dir", str(state_dir / "groups"), "--ready-file", str(ready_file)]
    for kind in KINDS:
        argv += [f"--{kind.lower()}s", STAND_IN_KINDS.resource(kind).api_version]
    for namespace in dict.fromkeys([*options.namespaces, *_operator_namespaces(options)]):
        argv += ["--namespace", namespace]
    runtime = spawn(
        "runtime", argv, logs, ready=ready_file.exists, timeout=timeout, env={**os.environ, **env}
    )
    state.components.append(runtime)
    state.save()
    if options.operator:
        progress(f"starting the operator (namespace {options.operator_namespace})")
        state.components.append(_start_operator(state, options, kubeconfig, logs))
        # for `pymirror exec` and the like: where the operator keeps its QueueSplits
        state.env["PYMIRROR_OPERATOR__NAMESPACE"] = options.operator_namespace
        state.save()
    # for `pymirror exec` and `pymirror status`: where the sandbox serves the workload kinds
    state.env["PYMIRROR_OPERATOR__WORKLOAD_KINDS"] = json.dumps(
        {kind: STAND_IN_KINDS.resource(kind).api_version for kind in KINDS}
    )
    state.save()
    (state_dir / "env").write_text(env_lines(state))


def _kafka_binary(kind: str) -> Path:
    return assets.tansu_binary() if kind == "tansu" else assets.noida_binary()


def _kafka_starter(
    kind: str, state_dir: Path, logs: Path, timeout: float, progress: Progress
) -> Callable[[list[int]], Component]:
    """What starts the Kafka broker of this kind on a given port (component ``kafka``),
    ready once it answers a Kafka ApiVersions request."""
    if kind == "tansu":
        progress("starting Tansu (Kafka)")
        tansu = _kafka_binary(kind)

        def start_tansu(ports: list[int]) -> Component:
            url = f"tcp://127.0.0.1:{ports[0]}"
            argv = [str(tansu), "broker", "--listener-url", url, "--advertised-listener-url", url]
            argv += ["--storage-engine", "memory://tansu/"]
            ready = functools.partial(kafka_api_versions_ok, ports[0])
            address = f"127.0.0.1:{ports[0]}"
            return spawn(
                "kafka", argv, logs, ready=ready, timeout=timeout, port=ports[0], url=address
            )

        return start_tansu
    progress("starting noida-db (Kafka)")
    noida = _kafka_binary(kind)

    def start_noida(ports: list[int]) -> Component:
        data = state_dir / "noida"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir(parents=True)
        argv = [str(noida), "start", "--data-dir", str(data), "--only", "kafka"]
        argv += ["--host", "127.0.0.1", "--kafka-port", str(ports[0])]
        ready = functools.partial(kafka_api_versions_ok, ports[0])
        address = f"127.0.0.1:{ports[0]}"
        return spawn("kafka", argv, logs, ready=ready, timeout=timeout, port=ports[0], url=address)

    return start_noida


def _operator_namespaces(options: UpOptions) -> list[str]:
    return [options.operator_namespace] if options.operator else []


def _start_operator(state: State, options: UpOptions, kubeconfig: Path, logs: Path) -> Component:
    """``pymirror operator`` on a free metrics port; ready once it logged that its watches
    start (``operator_started``)."""
    worker_state = Path(state.state_dir) / "operator" / "worker-state"
    worker_state.mkdir(parents=True, exist_ok=True)
    settings = operator_settings(options.operator_namespace, state.env, worker_state)
    env = {**os.environ, **state.env, **operator_env(settings)}
    log = logs / "operator.log"

    def operator(ports: list[int]) -> Component:
        argv = operator_argv(kubeconfig, options.namespaces, ports[0])
        ready = functools.partial(operator_started, log)
        url = f"http://127.0.0.1:{ports[0]}/metrics"
        timeout = options.timeout
        return spawn(
            "operator", argv, logs, ready=ready, timeout=timeout, env=env, port=ports[0], url=url
        )

    return on_free_ports(1, operator)


# --- down -------------------------------------------------------------------------------


def _stop_all(state: State, progress: Progress, grace: float = 30.0) -> list[str]:
    """Stop the components in reverse order; reap container processes; lines of what was left."""
    leftovers: list[str] = []
    for component in reversed(state.components):
        if component.group.group_alive():
            progress(f"stopping {component.name} (pid {component.pid})")
            # the runtime stops its pods first, each with its own grace period
            wait = grace * 4 if component.name == "runtime" else grace
            if not component.group.stop(wait):
                leftovers.append(f"{component.name} needed SIGKILL")
        if component.name == "runtime":
            for killed in GroupRecords(Path(state.state_dir) / "groups").reap():
                leftovers.append(f"killed a container process the runtime left: {killed}")
    return leftovers


def down(state_dir: Path, progress: Progress | None = None) -> State | None:
    """Stop everything ``up`` started and remove its files; the state that was (None if down)."""
    progress = progress or Progress()
    state_dir = state_dir.resolve()
    if not state_dir.exists():
        progress(f"not up (no {state_dir})")
        return None
    with locked(state_dir):
        state = State.load(state_dir)
        if state is None:
            progress(f"not up (no {state_dir / STATE_FILE})")
            clean(state_dir)
            return None
        for line in _stop_all(state, progress):
            progress(line)
        ports = [c.port for c in state.components if c.port]
        deadline = time.monotonic() + 10.0
        while (busy := [p for p in ports if port_open(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        clean(state_dir)
    (state_dir / ".lock").unlink(missing_ok=True)
    if busy:
        raise SandboxError(f"stopped, but ports {busy} are still open")
    progress(f"down; logs of this run kept in {state_dir / 'logs'}")
    return state
