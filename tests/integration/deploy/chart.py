"""Running helm on the chart (deploy/pymirror/) and reading what it renders.

``Helm`` runs the cached helm binary with its own XDG dirs (tests.servers.helm.helm_env);
``render`` returns the rendered documents, ``kinds`` picks them by kind and name.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.servers.helm import helm_env
from tests.servers.process import REPO

CHART = REPO / "deploy" / "pymirror"
RELEASE = "pymirror"
NAMESPACE = "pymirror-system"
Doc = dict[str, Any]


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Helm:
    binary: Path
    home: Path

    def run(self, *args: str, values: Mapping[str, Any] | None = None) -> Done:
        """``helm ARGS [-f values.json]``; never raises on a non-zero exit."""
        command = [str(self.binary), *args]
        with tempfile.TemporaryDirectory(dir=self.home) as scratch:  # safe from threads
            if values is not None:
                path = Path(scratch) / "values.json"
                path.write_text(json.dumps(values))
                command += ["-f", str(path)]
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=helm_env(self.home),
                timeout=120,
                check=False,
            )
        return Done(done.returncode, done.stdout, done.stderr)

    def lint(self, values: Mapping[str, Any] | None = None) -> Done:
        return self.run("lint", "--strict", str(CHART), values=values)

    def template(
        self, values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE
    ) -> Done:
        return self.run("template", RELEASE, str(CHART), "--namespace", namespace, values=values)

    def render(
        self, values: Mapping[str, Any] | None = None, *, namespace: str = NAMESPACE
    ) -> list[Doc]:
        """The rendered documents; AssertionError with helm's message if it fails."""
        done = self.template(values, namespace=namespace)
        assert done.returncode == 0, done.stderr
        return [d for d in yaml.safe_load_all(done.stdout) if isinstance(d, dict)]


def of_kind(docs: Sequence[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: Sequence[Doc], kind: str, name: str | None = None) -> Doc:
    found = [d for d in of_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''} rendered"
    return found[0]


def operator_container(docs: Sequence[Doc]) -> Doc:
    deployment = one(docs, "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def container_env(container: Mapping[str, Any]) -> dict[str, str]:
    """The container's env as name -> value (every entry must be a plain value)."""
    env: dict[str, str] = {}
    for entry in container.get("env") or []:
        assert "value" in entry, f"env {entry['name']} is not a plain value"
        env[entry["name"]] = str(entry["value"])
    return env
