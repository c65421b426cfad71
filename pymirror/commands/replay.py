"""``pymirror replay FILE.pcap --to HOST:PORT``: replay a capture's client connections.

Each captured client connection becomes one local connection carrying its
client->server bytes in order, paced by the capture timestamps (``--speed``
scales time; ``max`` does not wait). With HTTP filters, only the requests
that match are sent (``regex`` syntax, so ``--http-path '^(?!/health)'``
works). ``--dry-run`` reads, reassembles and filters without connecting.
Anything not delivered (packets the capture cut short, dropped or failed
flows) is in the summary and makes the exit status 1; Ctrl-C stops at once
with the summary (exit 130), a second Ctrl-C exits without one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from pymirror.errors import UsageError
from pymirror.settings import Settings
from traffic.errors import ReplayIncompleteError
from traffic.http_requests import RequestFilter
from traffic.pcaps import MappedPcap
from traffic.playback import PlaybackStats, guess_port, play
from traffic.reassembly import Limits
from traffic.replaying import ReplayLimits
from traffic.targets import ReplayTarget, connect_checked, parse_target


def _speed(text: str) -> float | None:
    if text == "max":
        return None
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < math.inf:  # also refuses nan and inf (use 'max' for no pacing)
        raise argparse.ArgumentTypeError(f"{text!r}: use a positive finite number or 'max'")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


DESCRIPTION = """\
Replay the client side of each TCP connection in a pcap file: one new local
connection to --to per captured connection, carrying its client->server
bytes in order, paced by the capture timestamps (--speed 2 is twice as fast,
max does not wait). Responses are read and discarded. HTTP filters keep only
the matching requests (regex syntax, searched; lookarounds work, e.g.
--http-path '^(?!/health)'). A summary follows: flows, bytes, dropped, errors.
A truncated file is replayed up to the cut, then reported (exit 1). Packets
the capture cut short (tcpdump -s 128), and flows dropped or failed at the
target, are counted in the summary and make the exit status 1. Ctrl-C stops
at once with the summary (exit 130); a second Ctrl-C exits without one.
--to is checked first with one TCP connection; that connection is kept and
carries the first replayed connection (if --to closes it first, or nothing is
replayed, it ends having sent nothing).
"""

EPILOG = """\
examples:
  pymirror replay capture.pcap --to 127.0.0.1:9000
  pymirror replay capture.pcap --to 127.0.0.1:9000 --speed max --loop 3
  pymirror replay capture.pcap --to localhost:8080 --http-method POST --http-path '^/api/'
  pymirror replay capture.pcap --dry-run --http-header '(?i)^x-env: *dev'
"""


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument("pcap", metavar="FILE.pcap", type=Path, help="a classic pcap file")
    parser.add_argument("--to", metavar="HOST:PORT", help="where to send the connections")
    parser.add_argument(
        "--port", type=_port, help="the captured server's port (default: guessed from SYNs)"
    )
    parser.add_argument(
        "--speed", type=_speed, default=1.0, metavar="N|max", help="time scale (default 1)"
    )
    parser.add_argument("--loop", type=_positive, default=1, metavar="N", help="passes (default 1)")
    parser.add_argument("--http-method", metavar="REGEX", help="only requests whose method matches")
    parser.add_argument("--http-path", metavar="REGEX", help="only requests whose target matches")
    parser.add_argument(
        "--http-header", metavar="REGEX", help="only requests with a header line matching"
    )
    parser.add_argument("--dry-run", action="store_true", help="count only; connect nowhere")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    rfilter = RequestFilter.build(args.http_method, args.http_path, args.http_header)
    target: ReplayTarget | None = None
    if not args.dry_run:
        if args.to is None:
            raise UsageError("give --to HOST:PORT, or --dry-run to only read the capture")
        target = parse_target(args.to)
    progress = _Progress()
    try:
        stats = asyncio.run(_replay(args, settings, target, rfilter, progress))
    finally:
        progress.close()
    _summary(stats, target, rfilter.active, args.json)
    if stats.error is not None:
        raise stats.error  # after the summary: what came before the cut was replayed
    if stats.interrupted:
        print("replay interrupted (Ctrl-C): the summary above is up to there", file=sys.stderr)
        return 130
    if (what := stats.undelivered()) is not None:
        where = f"to {target}" if target is not None else "(dry run)"
        raise ReplayIncompleteError(f"not everything in {args.pcap} was replayed {where}: {what}")
    return 0


async def _replay(
    args: argparse.Namespace,
    settings: Settings,
    target: ReplayTarget | None,
    rfilter: RequestFilter,
    progress: _Progress,
) -> PlaybackStats:
    # The capture is read first (an unreadable file fails before --to sees anything), then
    # --to is checked with one connection, which then carries the first replayed flow.
    if args.port is None:
        port = guess_port(args.pcap)
    else:
        port = args.port
        MappedPcap(args.pcap).close()  # an unreadable file: PcapError here
    connection: socket.socket | None = None
    if target is not None:
        connection = await connect_checked(target)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        if not stop.is_set():
            stop.set()  # the first: stop now, abandon unsent bytes, print the summary
            return
        os.write(2, b"interrupted again: exiting now, without a summary\n")
        os._exit(130)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    t = settings.traffic
    try:
        return await play(
            args.pcap,
            target,
            port=port,
            speed=args.speed,
            loop=args.loop,
            rfilter=rfilter,
            reassembly=Limits(idle_timeout=t.idle_timeout),
            replay=ReplayLimits(
                max_flow_backlog=t.flow_backlog_bytes,
                write_timeout=t.write_timeout,
                max_connections=t.max_connections,
            ),
            on_progress=progress.update,
            stop=stop,
            connection=connection,
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if connection is not None:
            connection.close()  # unless the first flow took it (then this is a no-op)


class _Progress:
    """A live status line on a terminal (stderr); nothing otherwise."""

    def __init__(self) -> None:
        self._status: Any = None
        if sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status("replaying...")
            self._status.start()

    def update(self, stats: PlaybackStats) -> None:
        if self._status is not None:
            r = stats.replay
            self._status.update(
                f"pass {stats.passes}: {stats.packets} packets, {r.flows} flows, "
                f"{r.bytes_sent} bytes sent"
            )

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()


def _summary(
    stats: PlaybackStats, target: ReplayTarget | None, filtered: bool, as_json: bool
) -> None:
    if as_json:
        print(json.dumps(stats.as_dict()))
        return
    r = stats.replay
    sent = f"sent to {target}" if target is not None else "to send (dry run)"
    rows = [
        ("passes", f"{stats.passes} ({stats.packets} packets)"),
        ("flows", f"{r.flows} ({r.flows_completed} completed)"),
        ("bytes", f"{r.bytes_sent} {sent}"),
        ("dropped", f"{r.bytes_dropped} bytes, {r.flows_dropped} flows"),
        (
            "truncated",
            f"{stats.truncated_packets} packets cut short by the capture "
            f"({stats.truncated_bytes} bytes never captured)",
        ),
        ("errors", str(r.errors)),
        (
            "time",
            f"{stats.wall_seconds:.2f} s for {stats.capture_seconds:.2f} s of capture",
        ),
    ]
    if filtered:
        rows.insert(
            3,
            (
                "requests",
                f"{stats.requests_matched} matched, {stats.requests_filtered} filtered out, "
                f"{stats.flows_not_http} flows not HTTP",
            ),
        )
    if r.reasons:
        rows.append(("reasons", "; ".join(f"{k}: {v}" for k, v in r.reasons.items())))
    if stats.interrupted:
        rows.append(("stopped", "by Ctrl-C before the end of the capture"))
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title="replay summary", show_header=False)
        for name, value in rows:
            table.add_row(name, value)
        Console().print(table)
    else:
        print("\n".join(f"{name:<10}{value}" for name, value in rows))
