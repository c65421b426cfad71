"""Pure pieces around capture and replay: --to, TARGET, the tap spec, HTTP splitting, BPF."""

from __future__ import annotations

import struct

import pytest

from pymirror.commands.mirror import CaptureTarget, parse_capture_target
from pymirror.errors import UsageError
from tests.support.crafting import KEY, ipv4_tcp
from traffic.capturing import PACKET_OUTGOING, bpf_program
from traffic.errors import HttpFilterError, TargetError
from traffic.http_requests import NotHttpError, Request, RequestFilter, RequestSplitter
from traffic.packets import ACK, FlowKey
from traffic.taps import TAP_NAME, plan_tap, tap_container, tap_state, tcpdump_command
from traffic.targets import ReplayTarget, parse_target

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ReplayTarget("127.0.0.1", 8080)),
        ("localhost:1", ReplayTarget("localhost", 1)),
        ("[::1]:65535", ReplayTarget("::1", 65535)),
    ],
)
def test_valid_to_addresses_parse(text: str, expected: ReplayTarget) -> None:
    assert parse_target(text) == expected


@pytest.mark.parametrize(
    "text", ["localhost", ":80", "host:0", "host:65536", "host:http", "::1:80", "[::1]80"]
)
def test_invalid_to_addresses_are_target_errors_with_the_expected_form(text: str) -> None:
    with pytest.raises(TargetError, match="HOST:PORT"):
        parse_target(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lo", CaptureTarget("iface", "lo", "lo")),
        ("any", CaptureTarget("iface", "any", None)),
        ("iface:eth0", CaptureTarget("iface", "eth0", "eth0")),
        ("netns:blue", CaptureTarget("netns", "blue", None)),
        ("netns:blue/veth0", CaptureTarget("netns", "blue", "veth0")),
        ("pcap:-", CaptureTarget("pcap", "-")),
        ("pod:shop/api-7d9", CaptureTarget("pod", "api-7d9", namespace="shop")),
        ("pod:api-7d9", CaptureTarget("pod", "api-7d9", namespace="default")),
    ],
)
def test_capture_targets_parse(text: str, expected: CaptureTarget) -> None:
    assert parse_capture_target(text) == expected


@pytest.mark.parametrize("text", ["eth0", "deploy:x", "netns:"])
def test_unknown_capture_targets_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_capture_target(text)


def test_tap_container_holds_only_net_raw_and_a_hardened_context() -> None:
    spec = tap_container()
    ctx = spec["securityContext"]
    assert ctx["capabilities"] == {"drop": ["ALL"], "add": ["NET_RAW"]}
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["privileged"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["name"] == TAP_NAME
    assert "tcp port 8080" in tcpdump_command(8080)
    assert tcpdump_command(8080)[tcpdump_command(8080).index("-w") + 1] == "-"


def pod(ephemeral: list[dict[str, object]], statuses: list[dict[str, object]]) -> dict[str, object]:
    return {
        "spec": {"containers": [{"name": "app"}], "ephemeralContainers": ephemeral},
        "status": {"ephemeralContainerStatuses": statuses},
    }


def test_tap_is_added_when_the_pod_has_none() -> None:
    plan = plan_tap(pod([], []))
    assert plan.container == TAP_NAME
    assert plan.patch == {"spec": {"ephemeralContainers": [tap_container()]}}


def test_running_tap_with_same_image_is_reused_without_a_patch() -> None:
    plan = plan_tap(pod([tap_container()], [{"name": TAP_NAME, "state": {"running": {}}}]))
    assert plan.container == TAP_NAME
    assert plan.patch is None


def test_terminated_tap_cannot_restart_so_a_new_name_is_used() -> None:
    other: dict[str, object] = {"name": "debugger", "image": "busybox"}
    p = pod([tap_container(), other], [{"name": TAP_NAME, "state": {"terminated": {}}}])
    plan = plan_tap(p)
    assert plan.container == f"{TAP_NAME}-2"
    assert plan.patch is not None
    containers = plan.patch["spec"]["ephemeralContainers"]
    assert [c["name"] for c in containers] == [TAP_NAME, "debugger", f"{TAP_NAME}-2"]
    assert tap_state(p, TAP_NAME) == "terminated"
    assert tap_state(p, "nope") == "absent"


def test_requests_split_across_feeds_with_length_and_chunked_bodies() -> None:
    one = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    two = (
        b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\n"
    )
    three = b"GET /c?q=1 HTTP/1.1\r\nX-Env: dev\r\n\r\n"
    stream = one + two + three
    splitter = RequestSplitter()
    got: list[Request] = []
    for i in range(0, len(stream), 7):
        got += splitter.feed(stream[i : i + 7])
    assert [r.raw for r in got] == [one, two, three]
    assert [(r.method, r.target) for r in got] == [
        ("POST", "/a"),
        ("POST", "/b"),
        ("GET", "/c?q=1"),
    ]
    assert got[2].headers == ("X-Env: dev",)


@pytest.mark.parametrize(
    "data", [b"\x16\x03\x01\x02\x00", b"HELLO WORLD\r\n\r\n", b"GET / SPDY/3\r\n\r\n"]
)
def test_non_http_streams_are_recognised(data: bytes) -> None:
    with pytest.raises(NotHttpError):
        RequestSplitter().feed(data)


def test_filter_matches_method_path_and_any_header_line() -> None:
    req = Request("POST", "/api/v1", ("Host: x", "X-Tenant: alice"), b"")
    assert RequestFilter.build("^POST$", r"^/api/", r"^X-Tenant: (?!bob)").matches(req)
    assert not RequestFilter.build(path=r"^(?!/api)").matches(req)
    assert not RequestFilter.build(header=r"^X-Tenant: bob").matches(req)
    assert not RequestFilter.build().active


def test_invalid_filter_regex_is_a_filter_error_naming_the_flag() -> None:
    with pytest.raises(HttpFilterError, match="--http-path"):
        RequestFilter.build(path="(unclosed")


def run_bpf(program: bytes, packet: bytes, pkttype: int = 0) -> int:
    """A tiny classic-BPF interpreter for the instructions bpf_program uses."""
    ins = [struct.unpack_from("HBBI", program, i) for i in range(0, len(program), 8)]
    a = x = pc = 0
    while True:
        code, jt, jf, k = ins[pc]
        pc += 1
        if code == 0x20 and k == (-0x1000 + 4) & 0xFFFFFFFF:
            a = pkttype
        elif code == 0x30:
            a = packet[k]
        elif code == 0x28:
            a = struct.unpack_from(">H", packet, k)[0]
        elif code == 0x48:
            a = struct.unpack_from(">H", packet, x + k)[0]
        elif code == 0xB1:
            x = (packet[k] & 0x0F) * 4
        elif code == 0x54:
            a &= k
        elif code == 0x15:
            pc += jt if a == k else jf
        elif code == 0x45:
            pc += jt if a & k else jf
        elif code == 0x06:
            return int(k)
        else:
            raise AssertionError(f"unexpected BPF opcode {code:#x}")


def test_bpf_program_keeps_tcp_on_the_port_either_direction_only() -> None:
    prog = bpf_program(80, drop_outgoing=True)
    to_server = ipv4_tcp(KEY, 1, ACK, b"x")
    from_server = ipv4_tcp(KEY.reversed(), 1, ACK, b"x")
    other = ipv4_tcp(FlowKey(KEY.src, 5000, KEY.dst, 443), 1, ACK, b"x")
    udp = bytearray(to_server)
    udp[9] = 17
    v6 = struct.pack(">IHBB16s16s", 6 << 28, 20, 6, 64, b"\0" * 16, b"\0" * 16)
    v6 += struct.pack(">HH", 1234, 80) + b"\0" * 16
    assert run_bpf(prog, to_server) > 0
    assert run_bpf(prog, from_server) > 0
    assert run_bpf(prog, v6) > 0
    assert run_bpf(prog, other) == 0
    assert run_bpf(prog, bytes(udp)) == 0
    assert run_bpf(prog, to_server, pkttype=PACKET_OUTGOING) == 0
    assert run_bpf(bpf_program(80, drop_outgoing=False), to_server, PACKET_OUTGOING) > 0
