"""``pymirror mirror TARGET --port P [--to HOST:PORT] [--output FILE|-]``: capture and mirror.

TARGET says where the target's inbound TCP is seen::

    lo | any | iface:NAME          a local interface (any: all of them)
    netns:NAME[/IFACE]             inside network namespace NAME (``ip netns``)
    pcap:FILE | pcap:-             a pcap file or stream, e.g. from ``tcpdump -U -w -``
    pod:[NAMESPACE/]NAME           a pod: tcpdump in an ephemeral capture container

``--to`` is checked (syntax, then one TCP connection, which then carries the
first replayed connection) before anything is captured or injected. Captured
frames go to ``--output`` untouched; the client->server bytes of each
connection are replayed to ``--to`` over one local connection each, responses
discarded. An existing ``--output`` file is
replaced only once the capture is up (``traffic.outputs``). Ctrl-C stops at
once, abandoning unsent replay bytes (counted); a summary follows. A second
Ctrl-C exits immediately, without a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from pymirror.errors import UsageError
from pymirror.settings import Settings
from traffic.capturing import RawSocketSource, Source, StreamSource
from traffic.errors import CaptureError, TrafficError
from traffic.mirroring import MirrorStats, mirror
from traffic.outputs import PcapOutput, same_file
from traffic.reassembly import Limits
from traffic.replaying import ReplayLimits
from traffic.targets import ReplayTarget, connect_checked, parse_target


@dataclass(frozen=True)
class CaptureTarget:
    kind: str  # "iface", "netns", "pcap" or "pod"
    name: str
    interface: str | None = None
    namespace: str | None = None


def parse_capture_target(text: str) -> CaptureTarget:
    """TARGET of ``pymirror mirror`` as data; ``UsageError`` explains the forms."""
    forms = "use lo, any, iface:NAME, netns:NAME[/IFACE], pcap:FILE, pcap:- or pod:[NS/]NAME"
    kind, sep, rest = text.partition(":")
    if not sep:
        if text in ("lo", "any"):
            return CaptureTarget("iface", text, None if text == "any" else text)
        raise UsageError(f"unknown capture target {text!r}: {forms}")
    if not rest:
        raise UsageError(f"capture target {text!r} names nothing after the colon: {forms}")
    if kind == "iface":
        return CaptureTarget("iface", rest, rest)
    if kind == "netns":
        name, _, iface = rest.partition("/")
        return CaptureTarget("netns", name, iface or None)
    if kind == "pcap":
        return CaptureTarget("pcap", rest)
    if kind == "pod":
        ns, _, pod = rest.rpartition("/")
        return CaptureTarget("pod", pod, namespace=ns or "default")
    raise UsageError(f"unknown capture target kind {kind!r}: {forms}")


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


DESCRIPTION = """\
Capture the inbound TCP of a target on --port. Write the capture as pcap
(--output), and/or replay each captured client connection live to a local
process (--to): one local connection per client connection, its bytes in
order, responses read and discarded. --to is checked (HOST:PORT syntax, then
one TCP connection) before anything is captured or injected; that connection
is kept and carries the first replayed client connection (if --to closes it
first, or nothing is replayed, it ends having sent nothing). A slow --to
never slows the capture or the pcap: its flows are dropped and counted.
An existing --output file is replaced only once the capture is up (a capture
that cannot start leaves it as it was). Ctrl-C stops at once: bytes not yet
delivered to --to are abandoned and counted; a summary goes to stderr. A
second Ctrl-C exits immediately, without a summary (exit 130).

TARGET, where the traffic is seen:
  lo | any | iface:NAME      a local interface (any: all of them)
  netns:NAME[/IFACE]         inside network namespace NAME (ip netns)
  pcap:FILE | pcap:-         a pcap file or stream, e.g. `tcpdump -U -w -`
  pod:[NAMESPACE/]NAME       a pod: tcpdump in an ephemeral capture container
                             (only NET_RAW; reused when already present)
"""

EPILOG = """\
examples:
  pymirror mirror netns:blue --port 8080 --to 127.0.0.1:9000
  pymirror mirror lo --port 8080 --output capture.pcap --duration 60
  pymirror mirror pod:shop/api-7d9 --port 8080 --to localhost:8080 -o - | tcpdump -r - -n
"""


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.add_argument("target", metavar="TARGET", help="where to capture (see above)")
    parser.add_argument("--port", type=_port, required=True, help="the target's TCP port")
    parser.add_argument("--to", metavar="HOST:PORT", help="replay each connection to this address")
    parser.add_argument("--output", "-o", metavar="FILE|-", help="write the capture as pcap")
    parser.add_argument(
        "--duration", type=_positive_float, metavar="SECONDS", help="stop after this long"
    )
    parser.add_argument("--count", type=_positive_int, metavar="N", help="stop after N packets")
    parser.add_argument("--image", help="pod targets: capture container image (with tcpdump)")
    parser.add_argument("--kubeconfig", help="pod targets: kubeconfig file")
    parser.add_argument("--context", help="pod targets: kubeconfig context")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    where = parse_capture_target(args.target)
    if args.to is None and args.output is None:
        raise UsageError("nothing to do: give --to HOST:PORT, --output FILE|- or both")
    _refuse_output_over_input(where, args.output)
    if args.output == "-" and sys.stdout.isatty():
        raise UsageError("refusing to write pcap to a terminal; use --output FILE or a pipe")
    target: ReplayTarget | None = None
    with contextlib.ExitStack() as stack:
        connection: socket.socket | None = None
        if args.to is not None:
            target = parse_target(args.to)
            # Before any capture or injection; the connection then carries the first flow.
            connection = stack.enter_context(asyncio.run(connect_checked(target)))
        output: BinaryIO | None = None
        pcap_output: PcapOutput | None = None
        if args.output == "-":
            output = sys.stdout.buffer
        elif args.output is not None:
            # A temporary file until the capture is up: the named file is untouched till then.
            pcap_output = stack.enter_context(PcapOutput(args.output))
            output = pcap_output.stream
        source = _open_source(where, args)
        stats = asyncio.run(
            _mirror(source, args, target, output, settings, pcap_output, connection)
        )
    _summary(stats, target, args.json)
    if stats.error is not None:
        if isinstance(stats.error, TrafficError):
            raise stats.error
        raise CaptureError(f"the capture failed: {stats.error}") from stats.error
    return 0


def _refuse_output_over_input(where: CaptureTarget, output: str | None) -> None:
    """``pcap:X --output X`` (any spelling, a link, or via stdin/stdout) would wipe its input."""
    if where.kind != "pcap" or output is None:
        return
    source: str | int = sys.stdin.fileno() if where.name == "-" else where.name
    sink: str | int = sys.stdout.fileno() if output == "-" else output
    if same_file(source, sink):
        shown = "standard output" if output == "-" else output
        raise UsageError(
            f"--output {shown} is the capture's own input {where.name!r}: writing it would "
            "destroy what is being read; write the capture to another file"
        )


def _open_source(where: CaptureTarget, args: argparse.Namespace) -> Source:
    if where.kind == "iface":
        return RawSocketSource(args.port, interface=where.interface)
    if where.kind == "netns":
        return RawSocketSource(args.port, interface=where.interface, netns=where.name)
    if where.kind == "pcap":
        if where.name == "-":
            return StreamSource.from_fd(sys.stdin.buffer.fileno())
        try:
            stream = open(where.name, "rb")  # noqa: SIM115 - closed by the source
        except OSError as e:
            raise CaptureError(f"cannot read {where.name}: {e.strerror or e}") from e
        return StreamSource.from_fd(stream.fileno(), close=stream.close)
    from traffic.kube_exec import PodTap  # only pod targets need the Kubernetes client
    from traffic.taps import DEFAULT_IMAGE

    assert where.namespace is not None
    tap = PodTap(
        where.namespace,
        where.name,
        image=args.image or DEFAULT_IMAGE,
        kubeconfig=args.kubeconfig,
        context=args.context,
    )
    return tap.source(tap.prepare(), args.port)


async def _mirror(
    source: Source,
    args: argparse.Namespace,
    target: ReplayTarget | None,
    output: BinaryIO | None,
    settings: Settings,
    pcap_output: PcapOutput | None = None,
    connection: socket.socket | None = None,
) -> MirrorStats:
    stop = threading.Event()
    loop = asyncio.get_running_loop()

    interrupted = Interrupts(stop, pcap_output)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    t = settings.traffic
    status = _Status(target)
    try:
        return await mirror(
            source,
            args.port,
            target,
            output,
            stop=stop,
            duration=args.duration,
            count=args.count,
            reassembly=Limits(idle_timeout=t.idle_timeout),
            replay=ReplayLimits(
                max_flow_backlog=t.flow_backlog_bytes,
                write_timeout=t.write_timeout,
                max_connections=t.max_connections,
            ),
            on_progress=status.update,
            on_output_ready=pcap_output.commit if pcap_output is not None else None,
            abandon_on_stop=True,
            connection=connection,
        )
    finally:
        status.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


class Interrupts:
    """The SIGINT/SIGTERM handler: the first sets ``stop`` (stop now, print the summary); the
    next one exits at once (130), removing a temporary output that never came up."""

    def __init__(
        self,
        stop: threading.Event,
        pcap_output: PcapOutput | None,
        exit_now: Callable[[int], object] = os._exit,
    ) -> None:
        self.stop = stop
        self.pcap_output = pcap_output
        self.exit_now = exit_now

    def __call__(self) -> None:
        if not self.stop.is_set():
            self.stop.set()
            return
        if self.pcap_output is not None:
            self.pcap_output.discard()
        os.write(2, b"interrupted again: exiting now, without a summary\n")
        self.exit_now(130)


class _Status:
    """A one-line live status on a terminal (stderr); nothing otherwise."""

    def __init__(self, target: ReplayTarget | None) -> None:
        self._status: Any = None
        if sys.stderr.isatty():
            from rich.console import Console

            self._status = Console(stderr=True).status("capturing... (Ctrl-C stops)")
            self._status.start()
        self._target = target

    def update(self, stats: MirrorStats) -> None:
        if self._status is not None:
            r = stats.replay
            to = f" -> {self._target}: {r.bytes_sent} B sent" if self._target else ""
            self._status.update(
                f"{stats.packets} packets, {r.flows} flows{to}, {r.bytes_dropped} B dropped "
                "(Ctrl-C stops)"
            )

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()


def _summary(stats: MirrorStats, target: ReplayTarget | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps(stats.as_dict()), file=sys.stderr)
        return
    r = stats.replay
    lines = [
        f"captured   {stats.packets} packets ({stats.kernel_drops} dropped by the kernel)",
        f"flows      {r.flows} ({r.flows_completed} completed)",
    ]
    if stats.truncated_packets:
        lines.append(
            f"truncated  {stats.truncated_packets} packets cut short by the capture's snap length "
            f"({stats.truncated_bytes} bytes never captured; capture with `tcpdump -s 0`)"
        )
    if target is not None:
        lines += [
            f"replayed   {r.bytes_sent} bytes to {target} ({r.response_bytes} response bytes "
            "discarded)",
            f"dropped    {r.bytes_dropped} bytes, {r.flows_dropped} flows, "
            f"{stats.handoff_dropped} packets behind",
            f"errors     {r.errors}",
        ]
    if r.reasons:
        lines.append("reasons    " + "; ".join(f"{k}: {v}" for k, v in r.reasons.items()))
    print("\n".join(lines), file=sys.stderr)
