"""HTTP/1.x requests cut out of a reassembled client stream, and regex filters over them.

``RequestSplitter`` is sans-IO: feed it stream bytes, get whole requests
(head and body, framed by Content-Length or chunked encoding) back as raw
bytes plus the parsed request line and header lines. Filters use the
``regex`` module, the engine of the queue filters, so lookarounds such as
``^(?!/health)`` work; each match runs under a time budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import regex

from traffic.errors import HttpFilterError

MAX_HEAD = 64 * 1024
MATCH_BUDGET = 0.05
"""Seconds one regex match may take before the request counts as not matching."""


class NotHttpError(Exception):
    """The stream is not HTTP/1.x requests (the flow is then skipped by filtered replays)."""


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: tuple[str, ...]
    """Header lines as sent, ``Name: value``."""
    raw: bytes


class RequestSplitter:
    """Splits one client->server HTTP/1.x byte stream into whole requests."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes | memoryview) -> list[Request]:
        self._buf += data
        out: list[Request] = []
        while True:
            request = self._next()
            if request is None:
                return out
            out.append(request)

    def _next(self) -> Request | None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                raise NotHttpError("no end of request head within 64 KiB")
            if buf and not buf[:1].isalpha():
                raise NotHttpError("stream does not start with an HTTP method")
            return None
        head = buf[:end].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[0].isalpha():
            raise NotHttpError(f"not an HTTP/1.x request line: {lines[0][:80]!r}")
        headers = tuple(lines[1:])
        body_start = end + 4
        body_end = self._body_end(headers, buf, body_start)
        if body_end is None:
            return None
        self._buf = buf[body_end:]
        return Request(parts[0], parts[1], headers, buf[:body_end])

    @staticmethod
    def _body_end(headers: tuple[str, ...], buf: bytes, start: int) -> int | None:
        length = 0
        for line in headers:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "transfer-encoding" and "chunked" in value.lower():
                return _chunked_end(buf, start)
            if name == "content-length":
                try:
                    length = int(value.strip())
                except ValueError as e:
                    raise NotHttpError(f"bad Content-Length {value.strip()!r}") from e
        end = start + length
        return end if end <= len(buf) else None


def _chunked_end(buf: bytes, pos: int) -> int | None:
    """Offset just past a chunked body starting at ``pos``, or None if incomplete."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = buf[pos:eol].split(b";")[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError as e:
            raise NotHttpError(f"bad chunk size {size_text[:20]!r}") from e
        pos = eol + 2
        if size == 0:
            end = buf.find(b"\r\n\r\n", pos - 2)  # trailers end with an empty line
            return None if end < 0 else end + 4
        pos += size + 2
        if pos > len(buf):
            return None


@dataclass
class RequestFilter:
    """Regexes a request must match (searched, so anchor with ``^`` when needed)."""

    method: regex.Pattern[str] | None = None
    path: regex.Pattern[str] | None = None
    header: regex.Pattern[str] | None = None
    timeouts: int = 0

    @classmethod
    def build(
        cls, method: str | None = None, path: str | None = None, header: str | None = None
    ) -> RequestFilter:
        def compile_(flag: str, text: str | None) -> regex.Pattern[str] | None:
            if text is None:
                return None
            try:
                return regex.compile(text)
            except regex.error as e:
                raise HttpFilterError(f"{flag} {text!r} is not a valid regex: {e}") from e

        return cls(
            compile_("--http-method", method),
            compile_("--http-path", path),
            compile_("--http-header", header),
        )

    @property
    def active(self) -> bool:
        return any(p is not None for p in (self.method, self.path, self.header))

    def matches(self, request: Request) -> bool:
        try:
            if self.method is not None and not self.method.search(
                request.method, timeout=MATCH_BUDGET
            ):
                return False
            if self.path is not None and not self.path.search(request.target, timeout=MATCH_BUDGET):
                return False
            return self.header is None or any(
                self.header.search(line, timeout=MATCH_BUDGET) for line in request.headers
            )
        except TimeoutError:
            self.timeouts += 1
            return False
