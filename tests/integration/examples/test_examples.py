"""Every object in examples/ applies to the real API server and validates with the models.

Each valid example (every document of every ``*.yaml`` outside ``examples/invalid/``) is
created in the test's namespace (its own ``metadata.namespace`` is replaced; a status is
written through the status subresource), stored with every field as written (nothing
pruned), and accepted by the models before and after the round trip. Each example in
``examples/invalid/`` is rejected by the models and by the server, whose 422 names the
field given in the file's first line, ``# invalid: <field path>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from registry.errors import InvalidError, ModelError
from registry.models import KINDS, parse_kind
from registry.objects import Kube
from registry.resources import Resource
from registry.session_models import PYMIRROR_KINDS
from tests.fixtures.kube import STAND_INS
from tests.servers.kube import KubeApi
from tests.servers.process import REPO

pytestmark = pytest.mark.integration

Obj = dict[str, Any]
EXAMPLES = REPO / "examples"
ALL_KINDS = {**KINDS, **PYMIRROR_KINDS}
VALID = sorted(
    p for p in EXAMPLES.rglob("*.yaml") if "invalid" not in p.relative_to(EXAMPLES).parts
)
INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))
INVALID_LINE = re.compile(r"# invalid: (\S+)\n")


def invalid_field(path: Path) -> str:
    """The field named by the file's first line, ``# invalid: <field path>`` ("" if none)."""
    match = INVALID_LINE.match(path.read_text())
    return match.group(1) if match else ""


INVALID_FIELDS = {path: invalid_field(path) for path in INVALID}
BUILT_IN = {"v1": "Secret"}
"""Built-in kinds an example may hold (apiVersion -> kind); served by a stand-in here."""


def documents(path: Path) -> list[Obj]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def ident(path: Path) -> str:
    return str(path.relative_to(EXAMPLES))


def is_built_in(obj: Obj) -> bool:
    return BUILT_IN.get(obj["apiVersion"]) == obj["kind"]


def resource_of(obj: Obj) -> Resource:
    if is_built_in(obj):
        return Resource(*STAND_INS[obj["kind"]])
    return ALL_KINDS[obj["kind"]].RESOURCE


def in_namespace(obj: Obj, namespace: str) -> Obj:
    """``obj`` moved to ``namespace`` (and a built-in kind to its stand-in's apiVersion)."""
    moved = {**obj, "metadata": {**obj["metadata"], "namespace": namespace}}
    if is_built_in(obj):
        moved["apiVersion"] = resource_of(obj).api_version
    return moved


async def apply(kube: Kube, namespace: str, obj: Obj) -> Obj:
    """Create ``obj`` without its status, then write the status through the subresource."""
    objects = kube.objects(resource_of(obj), namespace)
    body = {k: v for k, v in in_namespace(obj, namespace).items() if k != "status"}
    stored = await objects.create(body)
    if "status" in obj:
        stored = await objects.patch_status(stored["metadata"]["name"], obj["status"])
    return stored


def missing(written: Any, stored: Any, path: str = "") -> list[str]:
    """Paths of ``written`` that ``stored`` lacks or holds differently (extra keys allowed)."""
    if isinstance(written, dict) and isinstance(stored, dict):
        return [m for k, v in written.items() for m in missing(v, stored.get(k), f"{path}.{k}")]
    if isinstance(written, list) and isinstance(stored, list) and len(written) == len(stored):
        return [m for i, (w, s) in enumerate(zip(written, stored, strict=True))
                for m in missing(w, s, f"{path}[{i}]")]  # fmt: skip
    return [] if written == stored else [path]


@pytest.fixture
async def kube(kube_api: KubeApi, kube_crds: list[str]) -> AsyncIterator[Kube]:
    async with Kube.from_kubeconfig(kube_api.kubeconfig) as client:
        yield client


def test_there_are_valid_and_invalid_examples_of_every_kind() -> None:
    def kinds(paths: list[Path]) -> set[str]:
        return {d["kind"] for p in paths for d in documents(p) if not is_built_in(d)}

    assert kinds(VALID) == kinds(INVALID) == set(ALL_KINDS)


def test_the_readme_lists_every_example() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    files = [p for p in EXAMPLES.rglob("*") if p.is_file() and p.name != "README.md"]
    assert [ident(p) for p in files if f"`{ident(p)}`" not in readme] == []


@pytest.mark.parametrize("path", INVALID, ids=ident)
def test_an_invalid_example_names_one_field_in_its_first_line(path: Path) -> None:
    assert INVALID_FIELDS[path], f"{ident(path)}: no '# invalid: <field>' line"
    assert len(documents(path)) == 1


@pytest.mark.parametrize("path", VALID, ids=ident)
async def test_a_valid_example_is_accepted_by_the_models_and_stored_as_written(
    kube: Kube, unique_name: str, path: Path
) -> None:
    for obj in documents(path):
        if not is_built_in(obj):
            parse_kind(obj, ALL_KINDS)
        stored = await apply(kube, unique_name, obj)
        written = {k: v for k, v in in_namespace(obj, unique_name).items()}
        assert missing(written, stored) == []
        if not is_built_in(obj):
            assert parse_kind(stored, ALL_KINDS).to_body() == stored


@pytest.mark.parametrize("path", INVALID, ids=ident)
async def test_an_invalid_example_is_rejected_by_the_models_and_by_the_server_naming_its_field(
    kube: Kube, unique_name: str, path: Path
) -> None:
    field = INVALID_FIELDS[path]
    (obj,) = documents(path)
    with pytest.raises(ModelError) as by_model:
        parse_kind(obj, ALL_KINDS)
    assert isinstance(by_model.value.__cause__, ValidationError)
    with pytest.raises(InvalidError) as by_server:
        await apply(kube, unique_name, obj)
    assert field in [cause_field for cause_field, _ in by_server.value.causes], (
        f"{ident(path)}: the 422 names {by_server.value.causes}, not {field}"
    )


def test_the_documented_mirrord_config_splits_only_what_the_meme_app_registers() -> None:
    config = json.loads((EXAMPLES / "meme-app" / "mirrord-config.json").read_text())
    (registry,) = documents(EXAMPLES / "meme-app" / "queue-registry.yaml")
    (consumer,) = documents(EXAMPLES / "meme-app" / "kafka-topics-consumer.yaml")
    registered = {
        "SQS": set(registry["spec"]["queues"]),
        "Kafka": {t["id"] for t in consumer["spec"]["topics"]},
    }
    split = config["feature"]["split_queues"]
    assert {i: q["queue_type"] for i, q in split.items()} == {
        i: kind for kind, ids in registered.items() for i in ids
    }
    assert config["target"] == f"deployment/{registry['spec']['consumer']['name']}/main"
