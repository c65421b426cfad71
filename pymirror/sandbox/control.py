"""``pymirror sandbox up|down|status|env``: a local stand-in cluster with SQS and Kafka.

``up`` starts, on free loopback ports, each as a process group of its own that
outlives the command:

1. etcd and the apiextensions-apiserver (built first when missing), with a
   throw-away CA and client certificate; every CRD of pymirror and the stand-in
   workload kinds installed and Established;
2. a moto server (SQS);
3. a noida-db broker (Kafka), unless ``kafka=False``;
4. the local runtime (stand-in for the kubelet and the Deployment controller),
   watching the stand-in Deployments, StatefulSets and Rollouts;

and writes into the state directory ``state.json`` (pids, start times, ports,
URLs), ``kubeconfig`` and ``env`` (``export`` lines). ``down`` stops them in
reverse order (SIGTERM to each group, SIGKILL after a grace period), reaps any
container process the runtime left, checks the ports are free and removes
everything in the state directory except ``logs/``. A second ``up`` finds the
sandbox running and says so; ``up`` after a reboot (every recorded process gone)
starts afresh. A file lock serializes ``up`` and ``down`` on one state directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from pymirror.sandbox import assets
from pymirror.sandbox.errors import SandboxError
from pymirror.sandbox.groups import GroupId, GroupRecords
from pymirror.sandbox.kube_server import (
    Pki,
    apiserver_argv,
    apiserver_live,
    client_context,
    etcd_argv,
    etcd_healthy,
    http_get,
    write_kubeconfig,
    write_pki,
)
from pymirror.sandbox.workloads import KINDS, STAND_IN_KINDS

REGION = "us-east-1"
FIELD_MANAGER = "pymirror-sandbox"
STATE_FILE = "state.json"
#: What ``down`` leaves in the state directory: the last run's logs.
KEPT = ("logs",)


def default_state_dir() -> Path:
    return assets.cache_dir() / "sandbox"


@dataclass
class Component:
    """One process the sandbox started."""

    name: str
    pid: int
    started: int
    log: str
    port: int | None = None
    url: str | None = None

    @property
    def group(self) -> GroupId:
        return GroupId(self.pid, self.started)


@dataclass
class State:
    state_dir: str
    components: list[Component] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def save(self) -> None:
        path = Path(self.state_dir) / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2) + "\n")
        tmp.replace(path)

    @classmethod
    def load(cls, state_dir: Path) -> State | None:
        try:
            data = json.loads((state_dir / STATE_FILE).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise SandboxError(f"cannot read {state_dir / STATE_FILE}: {e}") from e
        components = [Component(**c) for c in data.pop("components", [])]
        return cls(components=components, **data)


class Progress:
    """``sandbox: [1.2s] message`` lines on stderr."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.start = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"sandbox: [{time.monotonic() - self.start:.1f}s] {message}", file=self.out)
        self.out.flush()


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def kafka_api_versions_ok(port: int, timeout: float = 1.0) -> bool:
    """A Kafka ApiVersions v0 request answered without error."""
    client_id = b"pymirror-sandbox"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 10:
                chunk = s.recv(10 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    _size, correlation, error = struct.unpack(">iih", head)
    return bool(correlation == 7 and error == 0)


def moto_ready(url: str) -> bool:
    try:
        status, _ = http_get(f"{url}/moto-api/")
    except (OSError, urllib.error.URLError):
        return False
    return status == 200


# --- starting processes -----------------------------------------------------------------


def _spawn(
    name: str,
    argv: Sequence[str],
    logs: Path,
    *,
    ready: Callable[[], bool],
    timeout: float,
    env: dict[str, str] | None = None,
    port: int | None = None,
    url: str | None = None,
) -> Component:
    """Start ``argv`` in its own session, logging to ``logs/<name>.log``; wait until ready."""
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as e:
            raise SandboxError(f"{name}: cannot run {argv[0]}: {e}") from e
    group = GroupId.of(proc.pid) or GroupId(proc.pid, -1)
    component = Component(name, proc.pid, group.started, str(log_path), port, url)
    try:
        _wait_ready(component, proc, ready, timeout)
    except BaseException:
        group.stop(5.0)
        proc.wait()
        raise
    return component


def _wait_ready(
    component: Component, proc: subprocess.Popen[bytes], ready: Callable[[], bool], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise _failed(component, f"exited with {proc.returncode} before it was ready", _Exited)
        if time.monotonic() > deadline:
            raise _failed(component, f"not ready after {timeout:.0f} s")
        time.sleep(0.1)


def _failed(
    component: Component, message: str, kind: type[SandboxError] = SandboxError
) -> SandboxError:
    tail = _tail(Path(component.log))
    return kind(f"{component.name} {message}; log {component.log}:\n{tail}")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def ensure_kube_binaries(cache: Path, progress: Progress) -> tuple[Path, Path]:
    """etcd and apiextensions-apiserver, built by the install script if missing."""
    etcd, apiserver = assets.kube_binaries(cache)
    if etcd.is_file() and apiserver.is_file():
        return etcd, apiserver
    script = assets.install_script()
    progress(f"building etcd + apiextensions-apiserver with {script} (minutes, once)")
    env = {**os.environ, "PYMIRROR_CACHE": str(cache)}
    with subprocess.Popen(
        ["bash", str(script)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            progress(f"  | {line.rstrip()}")
    if proc.returncode != 0 or not (etcd.is_file() and apiserver.is_file()):
        raise SandboxError(f"{script} failed (exit {proc.returncode}); see its output above")
    return etcd, apiserver


def install_crds(kubeconfig: Path, paths: Sequence[Path], timeout: float = 60.0) -> list[str]:
    """Server-side apply every CRD in ``paths``; wait until each is Established."""
    from registry.kube import KubeTransport

    transport = KubeTransport.from_kubeconfig(kubeconfig)
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    names = []
    try:
        for file in paths:
            for doc in yaml.safe_load_all(file.read_text()):
                if not isinstance(doc, dict) or doc.get("kind") != "CustomResourceDefinition":
                    continue
                name = doc["metadata"]["name"]
                transport.request(
                    "PATCH",
                    path,
                    what=f"apply CRD {name}",
                    params={"name": name},
                    query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                    body=doc,
                    content_type="application/apply-patch+yaml",
                )
                names.append(name)
        pending = set(names)
        deadline = time.monotonic() + timeout
        while pending:
            for name in sorted(pending):
                crd = transport.request("GET", path, what=f"get CRD {name}", params={"name": name})
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise SandboxError(f"CRDs not Established after {timeout:.0f} s: {sorted(pending)}")
            if pending:
                time.sleep(0.1)
    finally:
        transport.close()
    return names


# --- up ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpOptions:
    state_dir: Path
    namespaces: Sequence[str] = ("default",)
    kafka: bool = True
    timeout: float = 120.0
    """Seconds each component may take to become ready."""


def up(options: UpOptions, progress: Progress | None = None) -> tuple[State, bool]:
    """Bring the sandbox up; (its state, False if it was already up)."""
    progress = progress or Progress()
    state_dir = options.state_dir.resolve()
    with _locked(state_dir):
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
            _clean(state_dir)
        state = State(str(state_dir), namespaces=list(options.namespaces))
        try:
            _start(state, options, progress)
        except BaseException:
            progress("start-up failed: stopping what was started")
            _stop_all(state, progress)
            _clean(state_dir)
            raise
        progress(f"up in {time.monotonic() - progress.start:.1f} s; state in {state_dir}")
        return state, True


class _Exited(SandboxError):
    """The process ended before it was ready (for a server: most often its port was taken)."""


PORT_ATTEMPTS = 3


def _on_free_ports(count: int, start: Callable[[list[int]], Component]) -> Component:
    """``start`` on ``count`` free ports; again on fresh ports when the process exited early
    (another process may have bound a port between the check and the server's bind)."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return start([free_port() for _ in range(count)])
        except _Exited:
            if attempt == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


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
        return _spawn("etcd", argv, logs, ready=ready, timeout=timeout, port=ports[0], url=url)

    etcd_component = _on_free_ports(2, etcd)
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
        return _spawn("apiserver", argv, logs, ready=ready, timeout=timeout, port=ports[0], url=url)

    api = _on_free_ports(1, apiserver)
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
        return _spawn("moto", argv, logs, ready=ready, timeout=timeout, port=ports[0], url=url)

    sqs = _on_free_ports(1, moto)
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
        progress("starting noida-db (Kafka)")
        binary = assets.noida_binary()

        def kafka(ports: list[int]) -> Component:
            data = state_dir / "noida"
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)
            argv = [str(binary), "start", "--data-dir", str(data), "--only", "kafka"]
            argv += ["--host", "127.0.0.1", "--kafka-port", str(ports[0])]
            ready = functools.partial(kafka_api_versions_ok, ports[0])
            address = f"127.0.0.1:{ports[0]}"
            return _spawn(
                "kafka", argv, logs, ready=ready, timeout=timeout, port=ports[0], url=address
            )

        broker = _on_free_ports(1, kafka)
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
    for namespace in options.namespaces:
        argv += ["--namespace", namespace]
    runtime = _spawn(
        "runtime", argv, logs, ready=ready_file.exists, timeout=timeout, env={**os.environ, **env}
    )
    state.components.append(runtime)
    state.save()
    (state_dir / "env").write_text(env_lines(state))


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


def _clean(state_dir: Path) -> None:
    for entry in state_dir.iterdir():
        if entry.name in KEPT or entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def down(state_dir: Path, progress: Progress | None = None) -> State | None:
    """Stop everything ``up`` started and remove its files; the state that was (None if down)."""
    progress = progress or Progress()
    state_dir = state_dir.resolve()
    if not state_dir.exists():
        progress(f"not up (no {state_dir})")
        return None
    with _locked(state_dir):
        state = State.load(state_dir)
        if state is None:
            progress(f"not up (no {state_dir / STATE_FILE})")
            _clean(state_dir)
            return None
        for line in _stop_all(state, progress):
            progress(line)
        ports = [c.port for c in state.components if c.port]
        deadline = time.monotonic() + 10.0
        while (busy := [p for p in ports if port_open(p)]) and time.monotonic() < deadline:
            time.sleep(0.1)
        _clean(state_dir)
    (state_dir / ".lock").unlink(missing_ok=True)
    if busy:
        raise SandboxError(f"stopped, but ports {busy} are still open")
    progress(f"down; logs of this run kept in {state_dir / 'logs'}")
    return state


# --- status and env -----------------------------------------------------------------------


def health(state: State, component: Component) -> tuple[bool, str]:
    """(healthy, what was checked)."""
    if not component.group.alive():
        return False, "not running"
    if component.name == "etcd" and component.url:
        return etcd_healthy(component.url), "GET /health"
    if component.name == "apiserver" and component.url:
        pki_dir = Path(state.state_dir) / "pki"
        pki = Pki(
            pki_dir / "ca.crt",
            pki_dir / "server.crt",
            pki_dir / "server.key",
            pki_dir / "client.crt",
            pki_dir / "client.key",
        )
        return apiserver_live(component.url, client_context(pki)), "GET /livez"
    if component.name == "moto" and component.url:
        return moto_ready(component.url), "GET /moto-api/"
    if component.name == "kafka" and component.port:
        return kafka_api_versions_ok(component.port), "Kafka ApiVersions"
    return True, "running"


def status(state_dir: Path) -> tuple[State | None, list[dict[str, Any]]]:
    """The state (None when not up) and one row per component."""
    state = State.load(state_dir.resolve())
    if state is None:
        return None, []
    rows = []
    for component in state.components:
        ok, probe = health(state, component)
        rows.append(
            {
                "name": component.name,
                "pid": component.pid,
                "port": component.port,
                "url": component.url,
                "healthy": ok,
                "probe": probe,
                "log": component.log,
            }
        )
    return state, rows


def env_lines(state: State) -> str:
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in state.env.items())
