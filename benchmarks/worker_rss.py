"""Idle RSS of ``pymirror worker sqs``: 10 sessions on an empty queue, both session sources.

* ``file``: ``--sessions-file`` (the by-hand form; benchmarks/sqs_split.py measures it
  the same way);
* ``split``: ``--split NAMESPACE/NAME --kubeconfig K`` (the operator's workers): the
  worker reads its ``QueueSplit`` from a real API server, watches it and writes its
  status.

The script starts what it needs itself and stops it on exit (also on failure): moto
(``pymirror.local_sqs``) on a free loopback port and, for ``split``, etcd +
apiextensions-apiserver (the sandbox's pair, :mod:`pymirror.sandbox.kube_server`, from
``$PYMIRROR_CACHE/kube``: run scripts/install-kube-apiserver.sh once) with the
QueueSplit CRD. Each round makes the original, the fallback and 10 session queues the way
pymirror makes them (the worker refuses others) and, for ``split``, a QueueSplit with
one route per session; starts ``.venv/bin/pymirror worker sqs``; waits for its
``sqs split worker started`` line, ``--settle`` s more, and reads ``VmRSS`` from
``/proc/<pid>/status``; then stops it with SIGTERM. Rounds of the two modes alternate;
medians are reported. ``--wait-seconds`` (default 2) is the worker's long poll: a
SIGTERM lets the poll under way finish, so a short one keeps the run under a minute;
it does not change what is resident (``--wait-seconds 20``, the default of
``pymirror worker sqs``, measures the same within 0.1 MiB).

Goal: <= 80 MiB in both modes. The last lines are ``ratio sqs_idle_rss_mib_file <MiB>``
and ``ratio sqs_idle_rss_mib_split <MiB>``.

    .venv/bin/python benchmarks/worker_rss.py [--rounds 3] [--mode both|file|split]

``--quick`` (``make bench``) changes nothing: three rounds per mode take about 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pymirror.sandbox import assets, kube_server
from pymirror.sandbox.provisioning import install_crds
from registry.objects import Kube
from registry.session_models import QueueSplit
from splitter.naming import DEFAULT_SQS_QUEUE_FORMAT, NameFormat
from splitter.sqs.client import SqsClient, SqsEndpoint, connect
from splitter.sqs.queues import create_temporary_queue

BIN = Path(sys.executable).parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
REGION = "us-east-1"
SESSIONS = 10
NAMESPACE = "bench"
STARTED = b"sqs split worker started"
GOAL_MIB = 80.0
_names = count()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(argv: list[str], log: Path, ready: Any, what: str, timeout: float) -> Iterator[None]:
    """``argv`` in its own process group, output to ``log``; until ``ready()``; stopped on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{what} did not start; {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield
    finally:
        with_group(proc, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with_group(proc, signal.SIGKILL)
            proc.wait()


def with_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # the group this script started (start_new_session)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def moto(tmp: Path) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "pymirror.local_sqs", "-H", "127.0.0.1", "-p", str(port)]
    with process(argv, tmp / "moto.log", lambda: http_ok(f"{url}/moto-api/"), "moto", 30):
        yield url


@contextlib.contextmanager
def kube_api(tmp: Path) -> Iterator[Path]:
    """etcd + apiextensions-apiserver with the QueueSplit CRD; the kubeconfig."""
    etcd_bin, apiserver_bin = assets.kube_binaries(assets.cache_dir())
    if not (etcd_bin.is_file() and apiserver_bin.is_file()):
        raise SystemExit(f"no {etcd_bin} / {apiserver_bin}: run scripts/install-kube-apiserver.sh")
    workdir = tmp / "kube"
    pki = kube_server.write_pki(workdir, days=1, name="pymirror-bench")
    client_port, peer_port, port = free_port(), free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{client_port}"
    etcd_argv = kube_server.etcd_argv(etcd_bin, workdir / "etcd", client_port, peer_port, "bench")
    url = f"https://127.0.0.1:{port}"
    kubeconfig = workdir / "kubeconfig"
    kube_server.write_kubeconfig(kubeconfig, url, pki, name="pymirror-bench")
    apiserver_argv = kube_server.apiserver_argv(apiserver_bin, etcd_url, port, pki, workdir)
    context = kube_server.client_context(pki)
    with (
        process(
            etcd_argv, tmp / "etcd.log", lambda: kube_server.etcd_healthy(etcd_url), "etcd", 30
        ),
        process(
            apiserver_argv,
            tmp / "apiserver.log",
            lambda: kube_server.apiserver_live(url, context),
            "apiextensions-apiserver",
            60,
        ),
    ):
        install_crds(kubeconfig, [assets.crd_dir() / "queuesplits.yaml"])
        yield kubeconfig


@dataclass
class Queues:
    original: str
    fallback: str
    sessions: list[str]  # session k's queue (route "bench/s<k>")


async def make_queues(client: SqsClient) -> Queues:
    """The original, and the fallback and session queues made by pymirror from it."""
    tag = f"rss{os.getpid()}-{next(_names)}"
    original = await client.create_queue(f"{tag}-orig", {}, {})
    fmt = NameFormat(DEFAULT_SQS_QUEUE_FORMAT, "sqs")
    made = await asyncio.gather(
        create_temporary_queue(client, original, fmt, fallback=True, session=None),
        *(
            create_temporary_queue(client, original, fmt, fallback=False, session=session(k))
            for k in range(SESSIONS)
        ),
    )
    return Queues(original, made[0].url, [m.url for m in made[1:]])


def session(k: int) -> str:
    return f"{NAMESPACE}/s{k}"


def split_body(name: str, queues: Queues) -> dict[str, Any]:
    routes = [
        {
            "session": session(k),
            "sequence": k + 1,
            "destination": url,
            "messageFilter": {"user": f"^user-{k}$"},
        }
        for k, url in enumerate(queues.sessions)
    ]
    return {
        "apiVersion": "pymirror.dev/v1alpha1",
        "kind": "QueueSplit",
        "metadata": {"name": name},
        "spec": {
            "kind": "SQS",
            "original": queues.original,
            "fallback": queues.fallback,
            "target": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "app",
                "namespace": NAMESPACE,
            },
            "routes": routes,
        },
    }


def worker_rss(argv: list[str], log: Path, settle: float) -> float:
    """Start ``argv``, wait for its start-up log line, ``settle`` s more, then VmRSS in MiB."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env={**os.environ, **CREDENTIALS}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while STARTED not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"pymirror worker sqs did not start:\n{log.read_text()}")
            time.sleep(0.05)
        time.sleep(settle)  # idle: only long polls on the empty queue
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kib = next(int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:")
        return kib / 1024
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def idle_rss(
    client: SqsClient,
    endpoint: str,
    tmp: Path,
    *,
    kube: Kube | None,
    kubeconfig: Path | None,
    settle: float,
    wait_seconds: int,
) -> float:
    """MiB resident of one idle worker: sessions file when ``kube`` is None, else ``--split``."""
    queues = await make_queues(client)
    argv = [str(BIN / "pymirror"), "worker", "sqs", "--queue", queues.original]
    argv += ["--fallback-queue", queues.fallback, "--endpoint-url", endpoint]
    argv += ["--region", REGION, "--wait-seconds", str(wait_seconds)]
    name = f"split-{next(_names)}"
    created = False
    try:
        if kube is None:
            sessions = [
                {
                    "id": session(k),
                    "sequence": k + 1,
                    "queue": url,
                    "message_filter": {"user": f"^user-{k}$"},
                }
                for k, url in enumerate(queues.sessions)
            ]
            sessions_file = tmp / f"{name}.json"
            sessions_file.write_text(json.dumps(sessions))
            argv += ["--sessions-file", str(sessions_file)]
        else:
            await kube.objects(QueueSplit.RESOURCE, NAMESPACE).create(split_body(name, queues))
            created = True
            argv += ["--split", f"{NAMESPACE}/{name}", "--kubeconfig", str(kubeconfig)]
        return await asyncio.to_thread(worker_rss, argv, tmp / f"{name}.log", settle)
    finally:
        if kube is not None and created:
            await kube.objects(QueueSplit.RESOURCE, NAMESPACE).delete(name)
        await asyncio.gather(
            *(client.delete_queue(u) for u in [queues.original, queues.fallback, *queues.sessions])
        )


async def measure(
    endpoint: str, kubeconfig: Path | None, tmp: Path, modes: list[str], args: argparse.Namespace
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {mode: [] for mode in modes}
    sqs = SqsEndpoint(endpoint, REGION, CREDENTIALS["AWS_ACCESS_KEY_ID"], "bench")
    async with connect(sqs) as client:
        kube = Kube.from_kubeconfig(kubeconfig) if kubeconfig is not None else None
        try:
            for _ in range(args.rounds):
                for mode in modes:
                    on_kube = kube if mode == "split" else None
                    mib = await idle_rss(
                        client,
                        endpoint,
                        tmp,
                        kube=on_kube,
                        kubeconfig=kubeconfig,
                        settle=args.settle,
                        wait_seconds=args.wait_seconds,
                    )
                    results[mode].append(mib)
                    print(f"{mode:>5}: {mib:.1f} MiB", flush=True)
        finally:
            if kube is not None:
                kube.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=["both", "file", "split"], default="both")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds idle before reading")
    parser.add_argument("--wait-seconds", type=int, default=2, help="the worker's long poll")
    parser.add_argument(
        "--quick", action="store_true", help="accepted for `make bench`: the run is quick already"
    )
    args = parser.parse_args()
    modes = ["file", "split"] if args.mode == "both" else [args.mode]
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pymirror-rss-") as name:
        tmp = Path(name)
        with moto(tmp) as endpoint:
            if "split" in modes:
                with kube_api(tmp) as kubeconfig:
                    results = asyncio.run(measure(endpoint, kubeconfig, tmp, modes, args))
            else:
                results = asyncio.run(measure(endpoint, None, tmp, modes, args))
    print(
        f"pymirror worker sqs, {SESSIONS} sessions idle on an empty queue, "
        f"--wait-seconds {args.wait_seconds}, {args.settle:g} s settle, "
        f"{args.rounds} rounds per mode ({time.monotonic() - began:.0f} s); "
        f"goal <= {GOAL_MIB:g} MiB"
    )
    for mode in modes:
        values = ", ".join(f"{v:.1f}" for v in results[mode])
        print(f"{mode:>5}: median {statistics.median(results[mode]):.1f} MiB ({values})")
    for mode in modes:
        print(f"ratio sqs_idle_rss_mib_{mode} {statistics.median(results[mode]):.1f}")


if __name__ == "__main__":
    main()
