"""Real SQS servers for tests: moto server and LocalStack in host mode.

Both run as child processes (:class:`ManagedProcess`) on free loopback ports.
moto comes with the project's own venv (``moto[server]`` is a dependency);
LocalStack lives in its own Python 3.13 venv made by
``scripts/install-localstack.sh`` (see localstack/README.md for why) and is
started through ``localstack/run.sh``, the same way a developer runs it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.servers.process import CACHE, REPO, ManagedProcess, ServerError, free_port

REGION = "us-east-1"
SQS_KINDS = ("moto", "localstack")


@dataclass(frozen=True)
class SqsEndpoint:
    """Where a test finds an SQS API; credentials are always "test"/"test"."""

    kind: str
    url: str
    region: str = REGION


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=1.0) as resp:
        return json.loads(resp.read() or b"null")


def moto_ready(url: str) -> bool:
    """moto answers ``GET /moto-api/`` once its HTTP server is up."""
    try:
        with urllib.request.urlopen(f"{url}/moto-api/", timeout=1.0) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def localstack_ready(url: str) -> bool:
    """LocalStack is ready when sqs is running and the READY init hooks have finished."""
    try:
        health = _get_json(f"{url}/_localstack/health")
        init = _get_json(f"{url}/_localstack/init")
    except (OSError, urllib.error.URLError, ValueError):
        return False
    services = health.get("services", {}) if isinstance(health, dict) else {}
    completed = init.get("completed", {}) if isinstance(init, dict) else {}
    return services.get("sqs") in ("running", "available") and completed.get("READY") is True


def moto_server_argv(port: int) -> list[str]:
    """moto's server through :mod:`pymirror.local_sqs`, which fixes moto's race that hands
    one message to two concurrent receives (a duplicate no worker caused)."""
    if importlib.util.find_spec("moto.server") is None:
        raise ServerError(
            "moto server is not installed; run scripts/bootstrap.sh "
            "(moto[server] is a dependency of pymirror)"
        )
    return [sys.executable, "-m", "pymirror.local_sqs", "-H", "127.0.0.1", "-p", str(port)]


def localstack_python(cache: Path = CACHE) -> Path:
    """The LocalStack venv's interpreter, or a ServerError saying how to install it."""
    python = cache / "localstack-venv" / "bin" / "python"
    if not python.exists():
        raise ServerError(
            f"LocalStack is not installed ({python} missing); run scripts/install-localstack.sh"
        )
    return python


@dataclass
class RunningSqs:
    """A started SQS server: its endpoint and the process behind it."""

    endpoint: SqsEndpoint
    process: ManagedProcess
    data_dir: str | None = None

    def check(self) -> None:
        """Raise ServerError naming the server if it died or stopped answering."""
        ready = moto_ready if self.endpoint.kind == "moto" else localstack_ready
        if not self.process.alive():
            raise ServerError(
                f"{self.process.name} (pid {self.process.pid}) is not running; "
                f"log {self.process.log_path}:\n{self.process.log_tail()}"
            )
        if not ready(self.endpoint.url):
            raise ServerError(
                f"{self.process.name} at {self.endpoint.url} does not answer its readiness probe; "
                f"log {self.process.log_path}:\n{self.process.log_tail()}"
            )

    def stop(self) -> None:
        self.process.stop()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def start_moto(name: str = "moto") -> RunningSqs:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(name, moto_server_argv(port), lambda: moto_ready(url), timeout=30)
    proc.start()
    return RunningSqs(SqsEndpoint("moto", url), proc)


def start_localstack(
    name: str = "localstack", cache: Path = CACHE, queues: Sequence[str] = ()
) -> RunningSqs:
    """Run ``localstack/run.sh`` (the env localstack/README.md explains, init hooks) on a free port.

    ``queues`` are created by the READY init hook before the server counts as ready.
    """
    localstack_python(cache)  # a clear error before spawning anything
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data_dir = tempfile.mkdtemp(prefix="pymirror-localstack-")
    env = {
        "PYMIRROR_CACHE": str(cache),
        "FILESYSTEM_ROOT": data_dir,
        "PYMIRROR_LOCALSTACK_QUEUES": ",".join(queues),
    }
    proc = ManagedProcess(
        name,
        ["bash", str(REPO / "localstack" / "run.sh"), str(port)],
        lambda: localstack_ready(url),
        env=env,
        cwd=REPO,
        timeout=90,
    )
    try:
        proc.start()
    except ServerError:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return RunningSqs(SqsEndpoint("localstack", url), proc, data_dir)


def start_sqs(kind: str, name: str | None = None) -> RunningSqs:
    """Start the SQS server of this kind ("moto" or "localstack")."""
    if kind == "moto":
        return start_moto(name or kind)
    if kind == "localstack":
        return start_localstack(name or kind)
    raise ValueError(f"unknown SQS server kind {kind!r}; expected one of {SQS_KINDS}")
