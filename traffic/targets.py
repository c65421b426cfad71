"""The replay target ``--to HOST:PORT``: parsed, then proven reachable before any capture.

``ReplayTarget`` is the address replayed connections go to; not to be confused with a
capture target (``pymirror mirror TARGET``) or a routing target of the splitter.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from traffic.errors import TargetError


@dataclass(frozen=True)
class ReplayTarget:
    """Where replayed (or mirrored) client connections are sent: ``--to HOST:PORT``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_target(text: str) -> ReplayTarget:
    """``HOST:PORT`` or ``[IPV6]:PORT`` as a ``ReplayTarget``; ``TargetError`` says why not."""
    hint = "expected HOST:PORT, e.g. --to 127.0.0.1:8080 or --to [::1]:8080"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise TargetError(f"--to {text!r}: {hint}")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise TargetError(f"--to {text!r}: {hint}")
    if not host:
        raise TargetError(f"--to {text!r}: the host is empty; {hint}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise TargetError(f"--to {text!r}: the port must be 1-65535; {hint}")
    return ReplayTarget(host, int(port_text))


async def check_reachable(target: ReplayTarget, connect_within: float = 3.0) -> None:
    """Open and close one TCP connection to ``target``, or raise ``TargetError``."""
    try:
        _reader, writer = await asyncio.wait_for(
            asyncio.open_connection(target.host, target.port), connect_within
        )
    except TimeoutError as e:
        raise TargetError(
            f"--to {target}: no answer within {connect_within:g} s; is the local process listening?"
        ) from e
    except OSError as e:
        raise TargetError(
            f"--to {target}: cannot connect ({e.strerror or e}); start the local process first"
        ) from e
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
