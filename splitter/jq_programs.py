"""jq programs run in a helper process: an empty environment and a CPU-time budget.

A session's ``jq_filter`` is written by whoever starts the session, and it runs
on every message of the split. Run in the worker's own process it could read
the worker's environment (``$ENV.AWS_SECRET_ACCESS_KEY``) and stall every
session (``last(range(1e12))``). So programs are evaluated in one helper
process per worker (:func:`shared_evaluator`):

- started with an empty environment (``$ENV`` and ``env`` are ``{}``; the
  ``LC_CTYPE`` Python's locale coercion adds is removed before jq loads), in
  ``/``, with Python's isolated mode, stderr discarded; a program that imports a
  jq module is refused when it is compiled (:func:`check_program`);
- fed requests over a pipe: the program text, the message body (sent once per
  message, however many programs look at it) and the budget; it answers one
  byte. Compiled programs and the last parsed body are kept in the helper;
- each evaluation runs under ``ITIMER_PROF``: after ``budget`` seconds of the
  helper's CPU time the kernel kills it (SIGPROF). CPU time, not wall-clock,
  so a busy machine does not turn a quick program into a timeout. The caller
  sees :class:`TimeoutError`; the next evaluation starts a new helper.

The call is synchronous (the filter interface is): it waits for the helper's
answer, which the CPU timer bounds; a wall-clock hang guard
(:data:`HANG_GUARD`) covers a helper that stopped being scheduled at all.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time

import regex

#: CPU seconds one jq evaluation may take (parsing the body is not counted).
DEFAULT_JQ_BUDGET = 0.25
#: Wall-clock seconds to wait for a started helper to say it is ready.
START_GUARD = 120.0
#: Wall-clock seconds (plus 100x the budget) after which a helper that neither
#: answered nor died is killed: not a budget, a guard against a stopped process.
HANG_GUARD = 30.0

#: ``>IIdc``: program length, body length (``_SAME``: the previous body), budget, body kind.
_HEAD = struct.Struct(">IIdc")
_SAME = 0xFFFFFFFF
_TRUE, _FALSE, _ERROR, _READY = b"1", b"0", b"e", b"R"

# jq's module directives can only open a program; comments and blanks may precede them.
_MODULE = regex.compile(r"\A(?:\s|#[^\n]*(?:\n|\Z))*(?:import|include|module)\b")

_HELPER = r"""
import os
os.environ.clear()  # Python's own locale coercion may have set LC_CTYPE: nothing is left
import json, signal, struct, sys
import jq

HEAD = struct.Struct(">IIdc")
SAME = 0xFFFFFFFF
read = sys.stdin.buffer.read
out = sys.stdout.buffer
programs = {}
doc = None
parsed = False
out.write(b"R")
out.flush()
while True:
    head = read(HEAD.size)
    if len(head) < HEAD.size:
        break
    plen, blen, budget, kind = HEAD.unpack(head)
    text = read(plen).decode("utf-8", "surrogatepass")
    if blen != SAME:
        raw = read(blen)
        try:
            doc = json.loads(raw.decode("utf-8", "surrogatepass") if kind == b"s" else raw)
            parsed = True
        except Exception:
            parsed = False
    answer = b"e"
    if parsed:
        program = programs.get(text)
        if program is None:
            if len(programs) > 1024:
                programs.clear()
            try:
                program = programs[text] = jq.compile(text)
            except Exception:
                program = None
        if program is not None:
            signal.setitimer(signal.ITIMER_PROF, budget)
            try:
                first = next(iter(program.input_value(doc)), None)
            except Exception:
                answer = b"e"
            else:
                answer = b"0" if first is None or first is False else b"1"
            finally:
                signal.setitimer(signal.ITIMER_PROF, 0)
    out.write(answer)
    out.flush()
"""


class JqHelperError(Exception):
    """The helper process could not be started or died for another reason than its budget."""


def check_program(program: str) -> str | None:
    """Why ``program`` may not run here (a jq module directive), or None."""
    if _MODULE.match(program):
        return "jq modules (import/include/module) are not available to filters"
    return None


class JqEvaluator:
    """One helper process, restarted when it dies; thread-safe, one evaluation at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._last_body: object = None
        #: Helpers started so far (tests: a timeout starts a new one).
        self.starts = 0

    def evaluate(self, program: str, body: str | bytes, budget: float) -> bool | None:
        """Whether ``program``'s first result on ``body`` (valid JSON) is truthy; None when
        the program failed. Raises :class:`TimeoutError` when it ran over ``budget`` CPU
        seconds, :class:`JqHelperError` when the helper could not run it."""
        with self._lock:
            proc = self._proc if self._proc is not None else self._start()
            same = body is self._last_body
            request = [b"", program.encode("utf-8", "surrogatepass")]
            kind = b"s" if isinstance(body, str) else b"b"
            if not same:
                data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
                request.append(bytes(data))
            request[0] = _HEAD.pack(
                len(request[1]), _SAME if same else len(request[2]), budget, kind
            )
            stdin = proc.stdin
            assert stdin is not None
            try:
                stdin.write(b"".join(request))
                stdin.flush()
            except OSError:
                self._reap()
                raise JqHelperError("the jq helper process exited") from None
            self._last_body = body
            answer = self._answer(proc, HANG_GUARD + 100 * budget)
            if answer == _TRUE:
                return True
            if answer == _FALSE:
                return False
            if answer == _ERROR:
                return None
            # No answer: killed by its CPU timer, or it died, or it hung.
            code = self._reap()
            if code == -signal.SIGPROF or answer is None:
                raise TimeoutError(f"jq program ran over its {budget} s budget")
            raise JqHelperError(f"the jq helper process exited with {code}")

    def close(self) -> None:
        with self._lock:
            self._reap()

    def _start(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _HELPER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={},
                cwd="/",
                close_fds=True,
            )
        except OSError as e:
            raise JqHelperError(f"cannot start the jq helper process: {e}") from e
        self._proc = proc
        self._last_body = None
        if self._answer(proc, START_GUARD) != _READY:
            code = self._reap()
            raise JqHelperError(f"the jq helper process did not start (exit {code})")
        return proc

    @staticmethod
    def _answer(proc: subprocess.Popen[bytes], guard: float) -> bytes | None:
        """One byte from the helper; b"" at its exit, None after ``guard`` seconds."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + guard
        while True:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if ready:
                return os.read(fd, 1)
            if time.monotonic() >= deadline:
                return None

    def _reap(self) -> int | None:
        proc, self._proc = self._proc, None
        self._last_body = None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        return proc.wait()


_shared: JqEvaluator | None = None
_shared_lock = threading.Lock()


def shared_evaluator() -> JqEvaluator:
    """The process's one helper (started at its first evaluation, killed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = JqEvaluator()
            atexit.register(_shared.close)
        return _shared
