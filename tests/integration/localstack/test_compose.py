"""localstack/compose.yaml (for users with Docker) agrees with host mode.

No Docker engine on the project's machines, so the file is never run here: these checks
parse it. The image must be the LocalStack release scripts/install-localstack.sh pins for
host mode, every mounted host path must exist, and the settings the hooks and clients
rely on must be the ones localstack/run.sh sets.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.servers.process import REPO

pytestmark = pytest.mark.unit

COMPOSE = REPO / "localstack" / "compose.yaml"
INSTALL = REPO / "scripts" / "install-localstack.sh"
RUN = REPO / "localstack" / "run.sh"


def service() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert list(doc["services"]) == ["localstack"]
    svc: dict[str, Any] = doc["services"]["localstack"]
    return svc


def host_mode_pin() -> str:
    pins = re.findall(r"'localstack-core\[runtime\]==([0-9][^']*)'", INSTALL.read_text())
    assert len(pins) == 1, f"expected one localstack-core pin in {INSTALL}, found {pins}"
    return pins[0]


def test_the_image_is_the_release_host_mode_installs() -> None:
    assert service()["image"] == f"localstack/localstack:{host_mode_pin()}"


def test_every_mounted_host_path_exists_and_holds_the_hooks() -> None:
    mounts = [str(v).split(":") for v in service()["volumes"]]
    assert mounts, "the init hooks must be mounted"
    for mount in mounts:
        source = (COMPOSE.parent / mount[0]).resolve()
        assert source.exists(), f"{COMPOSE}: mounted path {mount[0]} does not exist"
    targets = {m[1]: (COMPOSE.parent / m[0]).resolve() for m in mounts}
    ready = targets["/etc/localstack/init/ready.d"]
    assert sorted(p.name for p in ready.glob("*.py")) == [
        "10-create-queues.py",
        "20-demo-queues.py",
    ]


def test_the_gateway_is_published_on_4566_on_loopback() -> None:
    assert service()["ports"] == ["127.0.0.1:4566:4566"]


def test_the_sqs_settings_are_host_modes_and_the_demo_is_on() -> None:
    env = service()["environment"]
    run = RUN.read_text()
    for name in ("SERVICES", "EAGER_SERVICE_LOADING", "SQS_ENDPOINT_STRATEGY", "DISABLE_EVENTS"):
        assert re.search(rf"\b{name}={re.escape(str(env[name]))}\b", run), (
            f"{name}={env[name]} in compose.yaml but not in run.sh"
        )
    assert env["LOCALSTACK_HOST"] == "localhost:4566"
    assert env["PYMIRROR_LOCALSTACK_DEMO"] == "${PYMIRROR_LOCALSTACK_DEMO:-1}"
    assert "/_localstack/init/ready" in " ".join(service()["healthcheck"]["test"])


def test_the_compose_file_needs_no_path_outside_localstack() -> None:
    for volume in service()["volumes"]:
        source = (COMPOSE.parent / str(volume).split(":")[0]).resolve()
        assert source.is_relative_to(COMPOSE.parent), source
