"""The replay target ``--to HOST:PORT``: parsed, then proven reachable before any capture.

``ReplayTarget`` is the address replayed connections go to; not to be confused with a
capture target (``pymirror mirror TARGET``) or a routing target of the splitter.
"""

from __future__ import annotations

import asyncio
import socket
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


async def connect_checked(target: ReplayTarget, connect_within: float = 3.0) -> socket.socket:
    """One TCP connection to ``target`` (blocking socket), or ``TargetError`` saying why not.

    The proof that ``--to`` is reachable; hand it to the replayer (``connection=``) and it
    carries the first replayed flow, so the target sees no extra, empty connection.
    """
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(connect_within):
            infos = await loop.getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
            )
            error: OSError = OSError(f"{target.host} has no address")
            for family, kind, proto, _name, address in infos:
                sock = socket.socket(family, kind, proto)
                sock.setblocking(False)
                try:
                    await loop.sock_connect(sock, address)
                except OSError as e:
                    sock.close()
                    error = e
                    continue
                except BaseException:
                    sock.close()
                    raise
                sock.setblocking(True)
                return sock
            raise error
    except TimeoutError as e:
        raise TargetError(
            f"--to {target}: no answer within {connect_within:g} s; is the local process listening?"
        ) from e
    except OSError as e:
        raise TargetError(
            f"--to {target}: cannot connect ({e.strerror or e}); start the local process first"
        ) from e


async def check_reachable(target: ReplayTarget, connect_within: float = 3.0) -> None:
    """Open and close one TCP connection to ``target``, or raise ``TargetError``."""
    (await connect_checked(target, connect_within)).close()
