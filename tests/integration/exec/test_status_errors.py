"""``pymirror status`` and ``session kill`` when the cluster says no, or cannot answer.

* RBAC: the test API server does not enforce RBAC (tests/kube/README.md), so a tiny local
  HTTP server stands in for an API server that denies: it serves the SplitSession list
  and patches like the real one, and answers the verb under test with the real API
  server's 403 ``Status`` body. The CLI (a process) must name the verb, the resource,
  the namespace and the ClusterRole ``pymirror-user``.
* No CRDs: a second real API server (etcd + apiextensions-apiserver) with nothing
  installed: exit 1, ``CrdsMissingError`` saying how to install them.
* Unreachable: a kubeconfig pointing at a closed loopback port: exit 1,
  ``ClusterUnreachableError`` naming the kubeconfig.
* ``session kill --id`` of a session that does not exist (the real test API server):
  exit 1, ``SessionNotFoundError`` pointing at ``pymirror status``.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from tests.integration.exec.support import pymirror_cli
from tests.servers.kube import KubeApi, RunningKube, start_kube

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

HANG = 60.0
SESSION = {
    "apiVersion": "pymirror.dev/v1alpha1",
    "kind": "SplitSession",
    "metadata": {"name": "exec-alice-1", "namespace": "shop", "resourceVersion": "7"},
    "spec": {},
}


def forbidden(verb: str, namespace: str) -> dict[str, Any]:
    """The 403 body kube-apiserver sends (its RBAC authorizer's wording)."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'splitsessions.pymirror.dev is forbidden: User "dev" cannot {verb} '
        f'resource "splitsessions" in API group "pymirror.dev" in the namespace "{namespace}"',
        "reason": "Forbidden",
        "details": {"group": "pymirror.dev", "kind": "splitsessions"},
        "code": 403,
    }


class Denying(BaseHTTPRequestHandler):
    """Serves the session list and patches; refuses ``denied`` (the Kubernetes verb)."""

    denied: ClassVar[str] = "deletecollection"
    seen: ClassVar[list[str]] = []

    def _verb(self) -> str:
        collection = self.path.split("?")[0].endswith("/splitsessions")
        return {
            ("GET", True): "list",
            ("GET", False): "get",
            ("PATCH", False): "patch",
            ("DELETE", False): "delete",
            ("DELETE", True): "deletecollection",
        }.get((self.command, collection), self.command)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        verb = self._verb()
        type(self).seen.append(verb)
        if verb == self.denied:
            code, body = 403, forbidden(verb, "shop")
        elif verb == "list":
            code = 200
            body = {"kind": "SplitSessionList", "metadata": {"resourceVersion": "9"}}
            body["items"] = [SESSION]
        else:
            code, body = 200, SESSION
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_DELETE = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


def kubeconfig(path: Path, server: str) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "dev", "user": {"token": "t"}}],
        "contexts": [{"name": "dev", "context": {"cluster": "c", "user": "dev"}}],
        "current-context": "dev",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def denying(tmp_path: Path) -> Iterator[tuple[Path, type[Denying]]]:
    handler = type("DenyingNow", (Denying,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="denying-api", daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        yield kubeconfig(tmp_path / "kubeconfig", url), handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


async def cli(*args: str) -> tuple[int, str, str]:
    return await pymirror_cli(*args, hang=HANG)


DENIED = (
    "AccessDeniedError: RBAC refuses verb {verb!r} on splitsessions.pymirror.dev in namespace "
    "shop; the ClusterRole pymirror-user (installed by the Helm chart) grants it: ask your "
    "cluster admin to bind it (kubectl create rolebinding pymirror-user "
    "--clusterrole=pymirror-user --user=<you> -n shop). The API server said: "
)


async def test_kill_all_refused_deletecollection_names_the_verb_and_the_role(
    denying: tuple[Path, type[Denying]],
) -> None:
    config, handler = denying
    handler.denied = "deletecollection"
    code, out, err = await cli("session", "kill-all", "-n", "shop", "--kubeconfig", str(config))
    assert code == 1, err
    assert err.startswith(DENIED.format(verb="deletecollection"))
    assert 'cannot deletecollection resource "splitsessions"' in err  # the server's words
    assert handler.seen == ["list", "patch", "deletecollection"]  # annotated first
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "verb"),
    [
        (["session", "kill", "--id", "exec-alice-1", "-n", "shop"], "patch"),
        (["session", "kill", "--id", "shop/exec-alice-1"], "delete"),
        (["status", "-n", "shop"], "list"),
    ],
)
async def test_each_refused_verb_is_named(
    denying: tuple[Path, type[Denying]], argv: list[str], verb: str
) -> None:
    config, handler = denying
    handler.denied = verb
    code, _out, err = await cli(*argv, "--kubeconfig", str(config))
    assert code == 1, err
    assert err.startswith(DENIED.format(verb=verb)), err
    assert handler.seen[-1] == verb


@pytest.fixture(scope="module")
def bare_kube() -> Iterator[RunningKube]:
    """A second real API server with no CRD installed."""
    running = start_kube("bare-kube")
    try:
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("argv", [["status", "-n", "shop"], ["session", "kill-all", "-A"]])
async def test_without_the_crds_status_and_kill_all_say_how_to_install_them(
    bare_kube: RunningKube, argv: list[str]
) -> None:
    config = str(bare_kube.api.kubeconfig)
    code, out, err = await cli(*argv, "--kubeconfig", config)
    assert code == 1, err
    assert err.startswith(
        f"CrdsMissingError: the API server of kubeconfig {config} does not serve "
        "splitsessions.pymirror.dev: pymirror's CRDs are not installed there. Install them "
        "(kubectl apply -f crds/, or the Helm chart with crds.install=true)"
    ), err
    assert out == ""


async def test_an_unreachable_server_is_named_with_the_kubeconfig(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    code, out, err = await cli("status", "-o", "json", "--kubeconfig", str(config))
    assert code == 1, err
    assert err.startswith(
        f"ClusterUnreachableError: cannot reach the Kubernetes API server of kubeconfig {config}"
    ), err
    assert "Check that the cluster is up and that --kubeconfig/--context" in err
    assert out == ""


async def test_killing_a_session_that_does_not_exist_points_at_status(
    kube_api: KubeApi, kube_crds: list[str], unique_name: str
) -> None:
    code, out, err = await cli(
        *("session", "kill", "--id", "nobody", "-n", unique_name),
        *("--kubeconfig", str(kube_api.kubeconfig)),
    )
    assert code == 1, err
    assert err == (
        f"SessionNotFoundError: no session 'nobody' in namespace {unique_name}; "
        f"`pymirror status -n {unique_name}` lists the sessions there (pass -n for another "
        "namespace)\n"
    )
    assert out == ""
