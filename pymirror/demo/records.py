"""Reading what the demo's consumers wrote into the records directory (see
:mod:`pymirror.demo.consumer`), and the control files that drive them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymirror.demo.plan import Delivery


@dataclass(frozen=True)
class Process:
    """One consumer process: the queue and the topic (None: no Kafka) it reads, whether it
    stopped."""

    name: str
    pid: int
    sqs: str
    kafka: str | None
    exited: bool


@dataclass
class Records:
    directory: Path
    #: Bytes of each ``.jsonl`` file already read.
    _offsets: dict[Path, int] = field(default_factory=dict)
    _deliveries: list[Delivery] = field(default_factory=list)

    def new_deliveries(self) -> list[Delivery]:
        """Deliveries recorded since the last call (whole lines only)."""
        new: list[Delivery] = []
        for path in sorted(self.directory.glob("*.jsonl")):
            name = path.name.split(".", 1)[0]
            offset = self._offsets.get(path, 0)
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            for line in data[:end].splitlines():
                record: dict[str, Any] = json.loads(line)
                new.append(Delivery(name, record["id"], record["via"], record["source"]))
            self._offsets[path] = offset + end
        self._deliveries += new
        return new

    @property
    def deliveries(self) -> list[Delivery]:
        return list(self._deliveries)

    def processes(self, name: str) -> list[Process]:
        found = []
        for path in self.directory.glob(f"{name}.*.start"):
            start = json.loads(path.read_text())
            exited = path.with_suffix(".exit").exists()
            found.append(Process(name, start["pid"], start["sqs"], start.get("kafka"), exited))
        return found

    def running(self, name: str) -> list[Process]:
        return [p for p in self.processes(name) if not p.exited]

    def paused(self, name: str) -> bool:
        running = self.running(name)
        return bool(running) and all(
            (self.directory / f"{name}.{p.pid}.paused").exists() for p in running
        )

    def pause(self, name: str) -> None:
        (self.directory / f"{name}.pause").touch()

    def quit(self, name: str) -> None:
        (self.directory / f"{name}.quit").touch()
