"""What a split worker process loads: its resident memory is a goal (benchmarks/worker_rss.py).

Each probe runs in a fresh interpreter (``sys.modules`` of this one has everything).
``pymirror worker sqs`` is run through the CLI up to the worker's event loop
(``asyncio.run`` is replaced by one that closes the coroutine), so the modules are
those its command, settings, logging set-up and process module import.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PROBE = """\
import asyncio, json, sys

def no_loop(coroutine):
    coroutine.close()
    raise SystemExit(0)

asyncio.run = no_loop
from pymirror.cli import main

try:
    main({argv!r})
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(code: str) -> set[str]:
    """The modules loaded once ``code`` ran (it prints them as its last line)."""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def _tops(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def _worker_sqs(sources: list[str], *options: str) -> set[str]:
    argv = [*options, "worker", "sqs", "--queue", "orders", "--fallback-queue", "orders-fb"]
    argv += [*sources, "--endpoint-url", "http://127.0.0.1:1"]
    return _modules_after(PROBE.format(argv=argv))


def test_a_sessions_file_sqs_worker_loads_neither_kubernetes_rich_nor_kafka(
    tmp_path: Path,
) -> None:
    sessions = tmp_path / "sessions.json"
    sessions.write_text("[]")
    loaded = _worker_sqs(["--sessions-file", str(sessions)], "--log-format", "json")
    assert {"pymirror.worker.sqs_process", "aiobotocore", "structlog"} <= loaded
    heavy = _tops(loaded) & {"kubernetes", "rich", "pygments", "aiokafka", "yaml"}
    assert not heavy, heavy
    assert not {
        m for m in loaded if m.startswith("splitter.kafka.") and m != "splitter.kafka.settings"
    }
    assert "registry.kube" not in loaded


def test_auto_log_format_on_a_pipe_is_json_and_loads_no_rich(tmp_path: Path) -> None:
    sessions = tmp_path / "sessions.json"
    sessions.write_text("[]")
    loaded = _worker_sqs(["--sessions-file", str(sessions)])  # stderr is a pipe here
    heavy = _tops(loaded) & {"rich", "pygments"}
    assert not heavy, heavy


def test_a_split_worker_loads_kubernetes_only_when_it_connects() -> None:
    loaded = _worker_sqs(["--split", "pymirror-system/orders"], "--log-format", "json")
    assert "pymirror.worker.split_source" in loaded
    heavy = _tops(loaded) & {"kubernetes", "rich", "aiokafka"}
    assert not heavy, heavy


def test_a_kube_made_from_a_kubeconfig_loads_the_vendor_client(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    code = (
        "import json, sys\n"
        "from registry.objects import Kube\n"
        "import registry.workloads, registry.config_sources, pymirror.worker.split_source\n"
        "assert 'kubernetes' not in sys.modules, 'kubernetes imported with registry.objects'\n"
        f"Kube.from_kubeconfig({str(kubeconfig)!r}).close()\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    assert {"kubernetes", "registry.kube"} <= _modules_after(code)


@pytest.mark.parametrize(
    ("fmt", "with_rich"),
    [("json", False), ("console", True), ("auto", False)],  # auto: stderr is a pipe
)
def test_structlog_loads_rich_only_for_console_output(fmt: str, with_rich: bool) -> None:
    code = (
        "import json, sys\n"
        "from pymirror import logs\n"
        f"logs.configure('info', {fmt!r})\n"
        "import structlog.dev\n"
        "state = {'rich': 'rich' in sys.modules, 'dev': structlog.dev.rich is not None}\n"
        "import rich.console\n"  # whoever needs rich afterwards still gets it
        "structlog.get_logger().info('hello', n=1)\n"
        "print(json.dumps(state))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.splitlines()[-1]) == {"rich": with_rich, "dev": with_rich}
    line = out.stderr.strip().splitlines()[-1]
    if fmt == "console":
        assert "hello" in line
    else:
        assert json.loads(line)["event"] == "hello"


def test_structlog_keeps_rich_when_it_was_loaded_first() -> None:
    code = (
        "import json, rich\n"
        "from pymirror import logs\n"
        "logs.configure('info', 'json')\n"
        "import structlog.dev\n"
        "print(json.dumps(structlog.dev.rich is rich))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout.splitlines()[-1]) is True
