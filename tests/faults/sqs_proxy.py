"""An HTTP proxy in front of a real SQS server that fails, throttles, delays or cuts chosen calls.

The SQS client under test uses the proxy as its ``endpoint_url``. The proxy reads
each request whole (botocore sends ``Content-Length`` bodies on keep-alive
connections), finds its action and queue, and applies the first :class:`Rule`
that matches, else passes it through unchanged:

* ``fail_entries``: for ``SendMessageBatch`` / ``DeleteMessageBatch`` /
  ``ChangeMessageVisibilityBatch``, the entries the rule's ``entries``
  predicate picks are taken out of the request, the rest goes to the server,
  and the picked ones are added to the answer's ``Failed`` list with the rule's
  ``code`` and ``sender_fault`` - exactly what a partly failed batch looks like;
* ``error``: answer the rule's ``status`` and ``code`` (``ThrottlingException``
  with 400, ``ServiceUnavailable`` with 503, ...) without calling the server;
* ``delay``: wait ``delay`` seconds (or until ``release`` is set), then pass the
  request through;
* ``cut``: close the connection without an answer (the client sees a reset);
  with ``after_server`` the request reaches the server first, so its effect is
  real but the client never learns it.

The client speaks the AWS JSON protocol (``X-Amz-Target: AmazonSQS.<Action>``,
JSON bodies; botocore >= 1.31); the query protocol (``Action=`` form bodies) is
recognised for the action name only, so ``fail_entries`` needs the JSON one.

Every request is recorded in :attr:`SqsProxy.calls` (action and decoded body, and
for a ``ReceiveMessage`` passed through the messages the server answered with)
and every rule counts its hits: tests assert on them and wait on them as
progress, never on a wall-clock budget. Loopback only; for tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

Kind = Literal["fail_entries", "error", "delay", "cut"]
#: The batch calls whose entries ``fail_entries`` can fail.
BATCH_ACTIONS = frozenset(
    {"SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"}
)
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


@dataclass
class Rule:
    """One fault: which calls it hits and what it does to them."""

    action: str
    kind: Kind
    #: Hit only calls whose ``QueueUrl`` ends with this (None: any queue).
    queue: str | None = None
    #: ``fail_entries``: which entries fail (None: all of them).
    entries: Callable[[dict[str, Any]], bool] | None = None
    code: str = "InternalError"
    sender_fault: bool = False
    status: int = 500
    delay: float = 0.0
    #: ``delay``: hold the call until this is set (instead of ``delay`` seconds).
    release: asyncio.Event | None = None
    after_server: bool = False
    #: How many calls it hits before it stops matching (None: until removed); for
    #: ``fail_entries`` with ``entries``, only calls holding an entry it picks count.
    times: int | None = None
    #: Calls hit so far.
    hits: int = 0
    #: Entries failed so far (``fail_entries``).
    failed_entries: list[dict[str, Any]] = field(default_factory=list)

    def matches(self, action: str, body: dict[str, Any]) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if action != self.action:
            return False
        return self.queue is None or str(body.get("QueueUrl", "")).endswith(self.queue)

    def pick(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """``fail_entries``: the entries of ``body`` to fail (the predicate is asked once
        per entry and call, so it may count)."""
        entries = list(body.get("Entries", []))
        return [e for e in entries if self.entries is None or self.entries(e)]


@dataclass
class Call:
    """One request the proxy saw."""

    action: str
    body: dict[str, Any]
    #: The rule applied to it, if any.
    rule: Rule | None = None
    #: ``ReceiveMessage`` passed through: the messages the server answered with.
    received: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class SqsProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream`` (an SQS URL)."""

    upstream: str
    port: int = 0
    rules: list[Rule] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    #: Calls whose forward to the server failed (the server cut the connection): the
    #: client's connection is cut too. A receive among them may have been delivered, its
    #: messages in flight at the server with nobody holding them.
    lost_replies: list[Call] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _session: aiohttp.ClientSession | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> SqsProxy:
        # a connection per call: no reuse of a keep-alive connection the server just closed
        self._session = aiohttp.ClientSession(
            auto_decompress=False, connector=aiohttp.TCPConnector(force_close=True)
        )
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> SqsProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- commands ------------------------------------------------------------

    def add(self, rule: Rule) -> Rule:
        """Apply ``rule`` from the next call on (rules are tried in the order added)."""
        self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with contextlib.suppress(ValueError):
            self.rules.remove(rule)

    def clear(self) -> None:
        self.rules.clear()

    def seen(self, action: str, queue: str | None = None) -> list[Call]:
        """The calls of ``action`` (to a queue URL ending with ``queue``) so far."""
        return [
            c
            for c in self.calls
            if c.action == action
            and (queue is None or str(c.body.get("QueueUrl", "")).endswith(queue))
        ]

    # --- serving -------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                if not await self._serve(request, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _serve(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is to be closed."""
        action, body = request.action(), request.json()
        rule, picked = None, []
        for candidate in self.rules:
            if not candidate.matches(action, body):
                continue
            if candidate.kind == "fail_entries":
                # Only a call holding an entry to fail counts as a hit (and against ``times``).
                picked = candidate.pick(body)
                if not picked:
                    continue
            rule = candidate
            break
        call = Call(action, body, rule)
        self.calls.append(call)
        if rule is not None:
            rule.hits += 1
        try:
            return await self._answer(request, writer, call, rule, picked)
        except aiohttp.ClientError:
            self.lost_replies.append(call)
            return False

    async def _answer(
        self,
        request: _Request,
        writer: asyncio.StreamWriter,
        call: Call,
        rule: Rule | None,
        picked: list[dict[str, Any]],
    ) -> bool:
        action, body = call.action, call.body
        if rule is None:
            status, headers, payload = await self._forward(request, request.body)
            if action == "ReceiveMessage" and status == 200 and request.is_json():
                call.received = list(json.loads(payload or b"{}").get("Messages", []))
        elif rule.kind == "error":
            status, headers, payload = _error(rule, request)
        elif rule.kind == "cut":
            if rule.after_server:
                await self._forward(request, request.body)
            return False
        elif rule.kind == "delay":
            if rule.release is not None:
                await rule.release.wait()
            else:
                await asyncio.sleep(rule.delay)
            status, headers, payload = await self._forward(request, request.body)
        else:
            status, headers, payload = await self._fail_entries(rule, request, body, picked)
        head = [f"HTTP/1.1 {status} X"]
        head += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in _HOP]
        head += [f"Content-Length: {len(payload)}", "Connection: keep-alive", "", ""]
        writer.write("\r\n".join(head).encode() + payload)
        await writer.drain()
        return True

    async def _forward(self, request: _Request, body: bytes) -> tuple[int, dict[str, str], bytes]:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        async with self._session.request(
            request.method, self.upstream + request.path, headers=headers, data=body
        ) as response:
            payload = await response.read()
            return response.status, dict(response.headers), payload

    async def _fail_entries(
        self, rule: Rule, request: _Request, body: dict[str, Any], failing: list[dict[str, Any]]
    ) -> tuple[int, dict[str, str], bytes]:
        if request.action() not in BATCH_ACTIONS or not request.is_json():
            raise ValueError(f"fail_entries needs a JSON-protocol batch call, got {request.path}")
        entries = list(body.get("Entries", []))
        passing = [e for e in entries if e not in failing]
        rule.failed_entries += failing
        failed = [
            {
                "Id": e["Id"],
                "Code": rule.code,
                "Message": "injected by the test proxy",
                "SenderFault": rule.sender_fault,
            }
            for e in failing
        ]
        if not passing:
            answer = {"Successful": [], "Failed": failed}
            headers = {"Content-Type": "application/x-amz-json-1.0"}
            return 200, headers, json.dumps(answer).encode()
        upstream_body = json.dumps({**body, "Entries": passing}).encode()
        status, headers, payload = await self._forward(request, upstream_body)
        if status != 200:
            return status, headers, payload
        answer = json.loads(payload or b"{}")
        answer["Failed"] = [*answer.get("Failed", []), *failed]
        answer.setdefault("Successful", [])
        return status, headers, json.dumps(answer).encode()


def _error(rule: Rule, request: _Request) -> tuple[int, dict[str, str], bytes]:
    if request.is_json():
        payload = json.dumps(
            {"__type": f"com.amazonaws.sqs#{rule.code}", "message": "injected by the test proxy"}
        ).encode()
        return (
            rule.status,
            {"Content-Type": "application/x-amz-json-1.0", "x-amzn-query-error": f"{rule.code};"},
            payload,
        )
    xml = (
        "<ErrorResponse><Error><Type>Receiver</Type>"
        f"<Code>{rule.code}</Code><Message>injected by the test proxy</Message>"
        "</Error><RequestId>0</RequestId></ErrorResponse>"
    )
    return rule.status, {"Content-Type": "text/xml"}, xml.encode()


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        for key, value in self.headers.items():
            if key.lower() == name:
                return value
        return ""

    def is_json(self) -> bool:
        return bool(self.header("x-amz-target"))

    def action(self) -> str:
        target = self.header("x-amz-target")
        if target:
            return target.rsplit(".", 1)[-1]
        form = urllib.parse.parse_qs(self.body.decode(errors="replace"))
        return form.get("Action", [""])[0]

    def json(self) -> dict[str, Any]:
        if self.is_json():
            try:
                decoded = json.loads(self.body or b"{}")
            except ValueError:
                return {}
            return decoded if isinstance(decoded, dict) else {}
        form = urllib.parse.parse_qs(self.body.decode(errors="replace"))
        return {k: v[0] for k, v in form.items()}


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip()] = value.strip()
    length = next((int(v) for k, v in headers.items() if k.lower() == "content-length"), 0)
    body = await reader.readexactly(length) if length else b""
    return _Request(method, path, headers, body)
