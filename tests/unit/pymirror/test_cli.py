"""The command line: lazy imports, usage errors, and errors printed as ``Name: message``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pymirror.cli import _command_in, _report, main
from pymirror.errors import ConfigError
from splitter.errors import SqsQueueMissingError

pytestmark = pytest.mark.unit

HEAVY = ("aiobotocore", "botocore", "aiokafka", "rich", "kubernetes", "moto", "jq")


def _modules_after(code: str) -> set[str]:
    probe = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}


def test_importing_the_cli_and_printing_help_import_no_engine_library() -> None:
    loaded = _modules_after(
        "import contextlib\nfrom pymirror.cli import main\n"
        "with contextlib.suppress(SystemExit):\n    main(['--help'])"
    )
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_the_command_is_found_after_global_options() -> None:
    assert _command_in(["--log-level", "debug", "info", "--settings"]) == "info"
    assert _command_in(["--log-format", "json", "worker", "sqs"]) == "worker"
    assert _command_in(["--help"]) is None
    assert _command_in(["nosuch"]) is None


def test_an_unknown_log_level_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--log-level", "nope", "info"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_an_unknown_log_level_in_the_environment_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PYMIRROR_LOG__LEVEL", "nope")
    assert main(["info"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ConfigError: invalid settings: log.level")


def test_errors_inside_a_task_group_print_one_line_each(
    capsys: pytest.CaptureFixture[str],
) -> None:
    group = ExceptionGroup(
        "unhandled errors in a TaskGroup",
        [SqsQueueMissingError("queue 'orders' does not exist"), ConfigError("bad format")],
    )
    assert _report(group) == 2  # the highest exit code of the errors inside
    assert capsys.readouterr().err.splitlines() == [
        "SqsQueueMissingError: queue 'orders' does not exist",
        "ConfigError: bad format",
    ]


def test_an_unexpected_error_prints_its_name_and_a_hint_not_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _report(ExceptionGroup("g", [RuntimeError("boom")])) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "RuntimeError: boom"
    assert "--log-level debug" in err
    assert "Traceback" not in err


def test_a_keyboard_interrupt_exits_130_silently(capsys: pytest.CaptureFixture[str]) -> None:
    assert _report(KeyboardInterrupt()) == 130
    assert capsys.readouterr().err == ""
