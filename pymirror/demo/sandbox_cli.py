"""The demo's own sandbox: ``pymirror sandbox up|down`` on the demo's state directory,
run as the CLI a user runs (its progress lines shown as they come)."""

from __future__ import annotations

import asyncio
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pymirror.errors import PymirrorError


class DemoError(PymirrorError):
    """The demo could not set its world up or drive it (the message names what and why)."""


async def pymirror_cli(
    args: Sequence[str], on_line: Callable[[str], None] | None = None
) -> tuple[int, str, str]:
    """``python -m pymirror ARGS``: (exit code, stdout, stderr); each stderr line is passed
    to ``on_line`` as it comes."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pymirror",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    err: list[str] = []

    async def pump() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            text = line.decode(errors="replace").rstrip("\n")
            err.append(text)
            if on_line is not None:
                on_line(text)

    out, _ = await asyncio.gather(process.stdout.read(), pump())
    code = await process.wait()
    return code, out.decode(errors="replace"), "\n".join(err)


def parse_env(text: str) -> dict[str, str]:
    """``export K=V`` lines (as ``pymirror sandbox env`` prints them) -> {K: V}."""
    env = {}
    for line in text.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, value = words[1].split("=", 1)
            env[key] = value
    return env


async def sandbox_up(
    state_dir: Path, namespace: str, on_line: Callable[[str], None], *, kafka: bool
) -> dict[str, str]:
    """A fresh sandbox in ``state_dir`` (one left running by an earlier demo is brought down
    first), with Tansu as its Kafka broker if ``kafka``: its ``env``."""
    base = ["--state-dir", str(state_dir)]
    if (state_dir / "state.json").exists():
        on_line(f"a demo sandbox is still up in {state_dir}: bringing it down first")
        await sandbox_down(state_dir, on_line)
    # Tansu, not noida-db: a split topic's group sees members leave and join, and noida-db
    # 0.2.0 never expires a member that died without leaving (docs/demo.md).
    broker = ["--kafka-broker", "tansu"] if kafka else ["--no-kafka"]
    args = ["sandbox", "up", *broker, "--namespace", namespace, *base]
    code, _, err = await pymirror_cli(args, on_line)
    if code != 0:
        raise DemoError(f"pymirror sandbox up failed (exit {code}): {err.splitlines()[-1:]}")
    code, out, err = await pymirror_cli(["sandbox", "env", *base])
    if code != 0:
        raise DemoError(f"pymirror sandbox env failed (exit {code}): {err}")
    return parse_env(out)


async def sandbox_down(state_dir: Path, on_line: Callable[[str], None]) -> None:
    code, _, err = await pymirror_cli(["sandbox", "down", "--state-dir", str(state_dir)], on_line)
    if code != 0:
        raise DemoError(f"pymirror sandbox down failed (exit {code}): {err}")
