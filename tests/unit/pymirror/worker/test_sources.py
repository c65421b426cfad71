"""The sessions file (pymirror/worker/sources.py): what it may hold, and how it is watched.

The watcher runs with a short poll on a real file; each test waits on what the
watcher did (an ``apply`` call, a log line, a number of looks at the file), never
on a wall-clock budget.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from pymirror.errors import UsageError
from pymirror.worker import sources
from pymirror.worker.sources import FileSessionSource, load_routes, parse_routes
from splitter.routing import SessionRoute

pytestmark = pytest.mark.unit

POLL = 0.005


def entry(session_id: str, sequence: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": session_id,
        "sequence": sequence,
        "topic": f"t-{session_id}",
        "message_filter": {"user": f"^{session_id}$"},
        **extra,
    }


class SessionsFile:
    """A sessions file rewritten in place (truncate, then write: not atomic), each version
    with its own mtime so that no two versions look alike to the watcher."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.versions = 0

    def write(self, text: str) -> None:
        with self.path.open("w") as f:
            f.write(text)
        self.versions += 1
        stamp = 1_700_000_000_000_000_000 + self.versions * 1_000_000_000
        os.utime(self.path, ns=(stamp, stamp))

    def sessions(self, *entries: dict[str, Any]) -> None:
        self.write(json.dumps(list(entries)))


class Watch:
    """A running ``watch`` whose ``apply`` records the session ids of each call."""

    def __init__(self, source: FileSessionSource) -> None:
        self.source = source
        self.applied: list[list[str]] = []
        self.changed = asyncio.Event()
        self.refuse = 0  # refuse this many calls (return False)
        self.gate: asyncio.Event | None = None  # hold the next call until set
        self.done = asyncio.Event()

    async def apply(self, routes: list[SessionRoute]) -> bool:
        self.applied.append([r.session_id for r in routes])
        self.changed.set()
        if self.gate is not None:
            gate, self.gate = self.gate, None
            await gate.wait()
        if self.refuse:
            self.refuse -= 1
            return False
        return True

    async def until(self, check: Callable[[], bool]) -> None:
        while not check():
            self.changed.clear()
            await self.changed.wait()


@pytest.fixture
def sessions_file(tmp_path: Path) -> SessionsFile:
    return SessionsFile(tmp_path / "sessions.json")


class Counted:
    """Something that happens again and again, with an event to wait for the next time."""

    def __init__(self) -> None:
        self.count = 0
        self._next = asyncio.Event()

    def happened(self) -> None:
        self.count += 1
        self._next.set()

    async def until(self, count: int) -> None:
        while self.count < count:
            self._next.clear()
            await self._next.wait()


@pytest.fixture
def looks(monkeypatch: pytest.MonkeyPatch) -> Counted:
    """How many times the watcher looked at the file."""
    counted = Counted()
    real = sources._version

    def version(path: Path) -> Any:
        counted.happened()
        return real(path)

    monkeypatch.setattr(sources, "_version", version)
    return counted


async def polls(looks: Counted, n: int) -> None:
    """Wait until the watcher looked at the file ``n`` more times."""
    await looks.until(looks.count + n)


class Log:
    """Stands in for the module's logger: records (level, event, fields), counts warnings."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, dict[str, Any]]] = []
        self.warned = Counted()

    def info(self, event: str, **fields: Any) -> None:
        self.entries.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.entries.append(("warning", event, fields))
        self.warned.happened()

    def warnings(self) -> list[str]:
        return [event for level, event, _ in self.entries if level == "warning"]


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> Log:
    recorder = Log()
    monkeypatch.setattr(sources, "log", recorder)
    return recorder


@pytest.fixture
async def watching(sessions_file: SessionsFile) -> AsyncIterator[Watch]:
    sessions_file.sessions(entry("alice", 1))
    source = FileSessionSource(sessions_file.path, "topic", poll=POLL)
    assert [r.session_id for r in source.load()] == ["alice"]
    watch = Watch(source)
    task = asyncio.create_task(source.watch(watch.apply, watch.done))
    try:
        yield watch
    finally:
        watch.done.set()
        await task


# --- start-up --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "  \n", "[{", "nul"])
def test_at_start_up_an_empty_or_unparseable_file_is_a_usage_error_naming_the_fix(
    sessions_file: SessionsFile, text: str
) -> None:
    sessions_file.write(text)
    with pytest.raises(UsageError, match=r"write \[\] for no sessions|not JSON"):
        load_routes(sessions_file.path, "topic")


def test_at_start_up_a_missing_file_is_a_usage_error_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"does not exist; write the active sessions.*\[\]"):
        load_routes(tmp_path / "nope.json", "topic")


def test_an_empty_list_is_a_deliberate_start_without_sessions(sessions_file: SessionsFile) -> None:
    sessions_file.write("[]")
    assert load_routes(sessions_file.path, "topic") == []


# --- what a file may hold ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry("a", 1.2), entry("b", 1.7)], "sequence must be an integer, got 1.2"),
        ([entry("a", True)], "sequence must be an integer, got true"),
        ([entry("a", "1")], 'sequence must be an integer, got "1"'),
        ([entry("a", 1.0)], "sequence must be an integer, got 1.0"),
        ([entry("a", 1), entry("b", 1)], "'b' shares sequence 1 with session 'a'"),
        ([entry("a", 1), entry("a", 2, topic="t-other")], "'a' is listed twice"),
        ([entry("a", 1), entry("b", 2, topic="t-a")], "has the topic of session 'a'"),
        ([entry("a", 1, message_filter=[])], "message_filter must be an object"),
        ([entry("a", 1, message_filter=None)], "message_filter must be an object"),
        ([entry("a", 1, message_filter={"user": 1})], "message_filter must be an object"),
        ([entry("a", 1, message_filter="^a$")], "message_filter must be an object"),
        ([{**entry("a", 1), "id": 7}], "id must be a non-empty string"),
        ([{**entry("a", 1), "id": ""}], "id must be a non-empty string"),
        ([entry("a", 1, topic=None)], "topic must be a non-empty string"),
    ],
)
def test_an_entry_breaking_a_rule_is_refused_naming_the_session_and_field(
    entries: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        parse_routes(entries, "sessions file f", "topic")


def test_a_session_without_a_message_filter_key_has_an_empty_filter() -> None:
    (only,) = parse_routes(
        [{"id": "a", "sequence": 1, "topic": "t", "jq_filter": ".vip"}], "f", "topic"
    )
    assert only.filter.pairs == ()
    assert only.filter.program == ".vip"


# --- watching ------------------------------------------------------------------------------


async def test_a_change_made_between_load_and_watch_is_applied(
    sessions_file: SessionsFile,
) -> None:
    sessions_file.sessions(entry("alice", 1))
    source = FileSessionSource(sessions_file.path, "topic", poll=POLL)
    source.load()
    sessions_file.sessions(entry("alice", 1), entry("bob", 2))  # while the worker starts
    watch = Watch(source)
    task = asyncio.create_task(source.watch(watch.apply, watch.done))
    await watch.until(lambda: bool(watch.applied))
    watch.done.set()
    await task
    assert watch.applied == [["alice", "bob"]]


@pytest.mark.parametrize("bad", ["", "[", '[{"id": "alice", "seq', "\n"])
async def test_an_empty_or_truncated_file_keeps_the_sessions_and_only_an_empty_list_ends_them(
    watching: Watch, sessions_file: SessionsFile, bad: str, log: Log
) -> None:
    sessions_file.write(bad)  # a rewrite caught half-way
    await log.warned.until(1)
    assert "keeping the current sessions" in log.warnings()[0]
    assert watching.applied == []
    sessions_file.write("[]")  # the deliberate end of every session
    await watching.until(lambda: bool(watching.applied))
    assert watching.applied == [[]]


@pytest.mark.parametrize(
    "bad",
    [
        [entry("alice", 1.2), entry("bob", 1.7)],  # both would be sequence 1
        [entry("alice", 1), entry("bob", True)],
        [entry("alice", 1), entry("bob", 2, message_filter=["^bob$"])],
        [entry("alice", 1), entry("alice", 2, topic="t-alice-2")],
        [entry("alice", 1), entry("bob", 2, topic="t-alice")],
    ],
)
async def test_a_bad_edit_keeps_the_sessions_and_a_later_good_one_applies(
    watching: Watch, sessions_file: SessionsFile, bad: list[dict[str, Any]], log: Log
) -> None:
    sessions_file.sessions(*bad)
    await log.warned.until(1)
    assert watching.applied == []
    sessions_file.sessions(entry("alice", 1), entry("bob", 2))
    await watching.until(lambda: bool(watching.applied))
    assert watching.applied == [["alice", "bob"]]


async def test_an_unusable_version_is_logged_once_however_many_polls_see_it(
    watching: Watch, sessions_file: SessionsFile, looks: Counted, log: Log
) -> None:
    sessions_file.write("[")
    await log.warned.until(1)
    await polls(looks, 20)
    assert len(log.warnings()) == 1
    sessions_file.write("[{")  # another bad version: logged again, once
    await log.warned.until(2)
    await polls(looks, 20)
    assert len(log.warnings()) == 2
    assert watching.applied == []


async def test_a_file_repaired_without_a_new_mtime_is_still_picked_up(
    watching: Watch, sessions_file: SessionsFile, log: Log
) -> None:
    sessions_file.write("")
    await log.warned.until(1)
    # Same size as "" never is; same mtime as the bad version (a coarse clock).
    stat = sessions_file.path.stat()
    sessions_file.path.write_text(json.dumps([entry("bob", 2)]))
    os.utime(sessions_file.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    await watching.until(lambda: bool(watching.applied))
    assert watching.applied == [["bob"]]


async def test_a_refused_change_is_offered_again_on_the_next_poll_without_a_file_change(
    watching: Watch, sessions_file: SessionsFile
) -> None:
    watching.refuse = 2  # e.g. bob's queue does not exist yet
    sessions_file.sessions(entry("alice", 1), entry("bob", 2))
    await watching.until(lambda: len(watching.applied) == 3)
    assert watching.applied == [["alice", "bob"]] * 3  # accepted the third time


async def test_a_refused_change_is_superseded_by_a_newer_version(
    watching: Watch, sessions_file: SessionsFile, looks: Counted
) -> None:
    watching.refuse = 1
    sessions_file.sessions(entry("bob", 2))
    await watching.until(lambda: len(watching.applied) == 1)
    sessions_file.sessions(entry("carol", 3))
    await watching.until(lambda: watching.applied[-1] == ["carol"])
    await polls(looks, 10)
    assert watching.applied in ([["bob"], ["carol"]], [["bob"], ["bob"], ["carol"]])


async def test_changes_apply_one_at_a_time_in_order_however_long_one_takes(
    watching: Watch, sessions_file: SessionsFile
) -> None:
    gate = asyncio.Event()
    watching.gate = gate  # the first apply is slow (e.g. resolving queue URLs)
    sessions_file.sessions(entry("bob", 2))
    await watching.until(lambda: len(watching.applied) == 1)
    sessions_file.sessions(entry("carol", 3))
    await asyncio.sleep(POLL * 10)  # room for a wrong second apply; the assert is not timed
    assert watching.applied == [["bob"]]  # nothing overtakes the change being applied
    gate.set()
    await watching.until(lambda: len(watching.applied) == 2)
    assert watching.applied == [["bob"], ["carol"]]
