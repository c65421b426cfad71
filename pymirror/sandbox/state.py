"""The sandbox's state directory: ``state.json``, the lock, the ``env`` lines, cleaning up.

``state.json`` records each component ``up`` started (pid, start time, port, URL,
log) and the environment for clients; a file lock serializes ``up`` and ``down``
on one state directory; ``clean`` removes everything but ``logs/`` (and the lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shlex
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pymirror.sandbox import assets
from pymirror.sandbox.errors import SandboxError
from pymirror.sandbox.groups import GroupId

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
    operator_namespace: str | None = None
    """The operator's namespace (None: no operator)."""
    kafka_broker: str | None = None
    """The Kafka broker's kind, ``noida`` or ``tansu`` (None: no Kafka)."""

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


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Hold the state directory's lock (creating the directory)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def clean(state_dir: Path) -> None:
    """Remove everything in ``state_dir`` except ``KEPT`` and the lock."""
    for entry in state_dir.iterdir():
        if entry.name in KEPT or entry.name == ".lock":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def env_lines(state: State) -> str:
    """The state's environment as ``export`` lines."""
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in state.env.items())
