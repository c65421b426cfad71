"""``pymirror sandbox status``: each recorded component probed for health."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pymirror.sandbox.kube_server import Pki, apiserver_live, client_context, etcd_healthy
from pymirror.sandbox.probes import kafka_api_versions_ok, metrics_ok, moto_ready
from pymirror.sandbox.state import Component, State


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
    if component.name == "operator" and component.url:
        return metrics_ok(component.url), "GET /metrics"
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
                "alive": component.group.alive(),
                "port": component.port,
                "url": component.url,
                "healthy": ok,
                "probe": probe,
                "log": component.log,
            }
        )
    return state, rows
