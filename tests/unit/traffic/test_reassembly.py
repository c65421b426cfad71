"""Table-driven tests of the sans-IO reassembler: one row per TCP rule."""

from __future__ import annotations

import random

import pytest

from tests.support.crafting import KEY, seg
from traffic.packets import ACK, FIN, RST, SYN, Segment
from traffic.reassembly import Data, Event, FlowEnded, FlowError, FlowStarted, Limits, Reassembler

pytestmark = pytest.mark.unit

ISN = 1000
WRAP_ISN = 0xFFFFFFF8  # 8 bytes before the 32-bit sequence space wraps


def run(segments: list[Segment], limits: Limits | None = None, close: bool = True) -> list[Event]:
    r = Reassembler(limits)
    events: list[Event] = []
    for s in segments:
        events.extend(r.feed(s))
    if close:
        events.extend(r.close(99.0))
    return events


def stream(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Data))


def ends(events: list[Event]) -> list[Event]:
    return [e for e in events if isinstance(e, FlowEnded | FlowError)]


CASES = [
    pytest.param(
        [
            seg(ISN, flags=SYN),
            seg(ISN + 1, b"hello "),
            seg(ISN + 7, b"world"),
            seg(ISN + 12, flags=FIN | ACK),
        ],
        b"hello world",
        "fin",
        id="in-order",
    ),
    pytest.param(
        [
            seg(ISN, flags=SYN),
            seg(ISN + 7, b"world"),
            seg(ISN + 1, b"hello "),
            seg(ISN + 12, flags=FIN | ACK),
        ],
        b"hello world",
        "fin",
        id="out-of-order",
    ),
    pytest.param(
        [
            seg(ISN, flags=SYN),
            seg(ISN + 1, b"abc"),
            seg(ISN + 1, b"abc"),
            seg(ISN + 4, b"def"),
            seg(ISN + 4, b"def"),
        ],
        b"abcdef",
        "capture-end",
        id="retransmission",
    ),
    pytest.param(
        [seg(ISN, flags=SYN), seg(ISN + 1, b"abcd"), seg(ISN + 3, b"cdefg")],
        b"abcdefg",
        "capture-end",
        id="overlap-new-extends-delivered",
    ),
    pytest.param(
        [seg(ISN, flags=SYN), seg(ISN + 5, b"efgh"), seg(ISN + 1, b"abcdefg")],
        b"abcdefgh",
        "capture-end",
        id="overlap-new-covers-buffered-head",
    ),
    pytest.param(
        [seg(ISN, flags=SYN), seg(ISN + 6, b"f"), seg(ISN + 4, b"defghij"), seg(ISN + 1, b"abc")],
        b"abcdefghij",
        "capture-end",
        id="overlap-buffered-covers-buffered",
    ),
    pytest.param(
        [seg(ISN, flags=SYN), seg(ISN + 4, b"de"), seg(ISN + 4, b"defgh"), seg(ISN + 1, b"abc")],
        b"abcdefgh",
        "capture-end",
        id="same-start-keeps-longer-copy-short-first",
    ),
    pytest.param(
        [seg(ISN, flags=SYN), seg(ISN + 4, b"defgh"), seg(ISN + 4, b"de"), seg(ISN + 1, b"abc")],
        b"abcdefgh",
        "capture-end",
        id="same-start-keeps-longer-copy-long-first",
    ),
    pytest.param(
        [
            seg(WRAP_ISN, flags=SYN),
            seg(WRAP_ISN + 1, b"0123456"),
            seg(WRAP_ISN + 13, b"CDEF"),  # wrapped: sequence number 5
            seg(WRAP_ISN + 9, b"89AB"),  # wrapped: sequence number 1
            seg(WRAP_ISN + 8, b"7"),  # sequence number 0
            seg(WRAP_ISN + 17, flags=FIN | ACK),
        ],
        b"0123456789ABCDEF",
        "fin",
        id="wraparound",
    ),
    pytest.param(
        [
            seg(ISN, flags=SYN),
            seg(ISN + 1, b"ab"),
            seg(ISN + 5, b"ef", flags=FIN | ACK),
            seg(ISN + 3, b"cd"),
        ],
        b"abcdef",
        "fin",
        id="fin-before-pending-data",
    ),
    pytest.param(
        [seg(ISN, flags=SYN), seg(ISN + 1, b"ab"), seg(ISN + 3, flags=RST), seg(ISN + 3, b"late")],
        b"ab",
        "rst",
        id="rst-aborts",
    ),
    pytest.param(
        [seg(5_000_000, b"mid"), seg(5_000_003, b"stream"), seg(5_000_009, flags=FIN | ACK)],
        b"midstream",
        "fin",
        id="mid-stream-start",
    ),
    pytest.param(
        [seg(ISN, flags=SYN), seg(ISN + 1, b"ab"), seg(ISN + 10, b"never")],
        b"ab",
        "gap",
        id="gap-at-capture-end",
    ),
    pytest.param(
        [
            seg(ISN, flags=SYN),
            seg(ISN + 1, b"ab", flags=FIN | ACK),
            seg(ISN + 1, b"ab"),
            seg(ISN + 3, flags=FIN | ACK),
        ],
        b"ab",
        "fin",
        id="segments-after-fin-ignored",
    ),
]


@pytest.mark.parametrize(("segments", "expected", "end"), CASES)
def test_reassembly_rule_delivers_expected_stream_and_one_end(
    segments: list[Segment], expected: bytes, end: str
) -> None:
    events = run(segments)
    assert isinstance(events[0], FlowStarted)
    assert stream(events) == expected
    (last,) = ends(events)
    if end == "gap":
        assert isinstance(last, FlowError)
        assert "gap" in last.reason
    else:
        assert last == FlowEnded(KEY, last.ts, end)


def test_mid_stream_start_is_flagged_and_syn_start_is_not() -> None:
    mid = run([seg(7, b"x")])[0]
    syn = run([seg(7, flags=SYN)])[0]
    assert mid == FlowStarted(KEY, 1.0, True)
    assert syn == FlowStarted(KEY, 1.0, False)


def test_bare_ack_or_fin_of_unknown_flow_starts_nothing() -> None:
    assert run([seg(1), seg(2, flags=FIN | ACK), seg(3, flags=RST)]) == []


def test_out_of_order_buffer_bound_fails_the_flow_once() -> None:
    limits = Limits(max_buffer_bytes=10)
    segments = [seg(ISN, flags=SYN)] + [seg(ISN + 2 + 4 * i, b"xxxx") for i in range(5)]
    events = run(segments, limits)
    (end,) = ends(events)
    assert isinstance(end, FlowError)
    assert "bound" in end.reason
    assert stream(events) == b""


def test_idle_flow_expires_with_capture_time() -> None:
    r = Reassembler(Limits(idle_timeout=5.0))
    r.feed(seg(ISN, flags=SYN, ts=1.0))
    r.feed(seg(ISN + 1, b"a", ts=2.0))
    assert r.expire(6.9) == []
    assert r.expire(7.1) == [FlowEnded(KEY, 7.1, "idle")]
    assert len(r) == 0


def test_idle_expiry_is_triggered_by_later_segments_of_other_flows() -> None:
    r = Reassembler(Limits(idle_timeout=5.0))
    r.feed(seg(ISN, flags=SYN, ts=1.0))
    other = KEY._replace(sport=40001)
    events = r.feed(seg(ISN, flags=SYN, ts=20.0, key=other))
    assert FlowEnded(KEY, 20.0, "idle") in events


def test_new_syn_on_same_tuple_ends_old_flow_and_starts_new() -> None:
    events = run(
        [seg(ISN, flags=SYN), seg(ISN + 1, b"old"), seg(9000, flags=SYN), seg(9001, b"new")]
    )
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["FlowStarted", "Data", "FlowEnded", "FlowStarted", "Data", "FlowEnded"]
    assert events[2] == FlowEnded(KEY, 1.0, "reused")
    assert stream(events[3:]) == b"new"


def test_retransmitted_syn_does_not_restart_flow() -> None:
    events = run(
        [seg(ISN, flags=SYN), seg(ISN + 1, b"ab"), seg(ISN, flags=SYN), seg(ISN + 3, b"cd")]
    )
    assert stream(events) == b"abcd"
    assert len(ends(events)) == 1


def test_peer_reset_ends_flow() -> None:
    r = Reassembler()
    r.feed(seg(ISN, flags=SYN))
    assert r.reset(KEY, 3.0) == [FlowEnded(KEY, 3.0, "rst")]
    assert r.reset(KEY, 4.0) == []


def test_max_flows_refuses_and_counts_extra_flows() -> None:
    r = Reassembler(Limits(max_flows=1))
    r.feed(seg(ISN, flags=SYN))
    assert r.feed(seg(ISN, flags=SYN, key=KEY._replace(sport=1))) == []
    assert r.stats.refused == 1


@pytest.mark.parametrize("seed", range(25))
def test_shuffled_duplicated_segments_reassemble_byte_exact(seed: int) -> None:
    """Random cuts, order and duplicates of one stream (with a wrapping ISN) come out intact."""
    rnd = random.Random(seed)
    body = rnd.randbytes(rnd.randrange(1, 5000))
    isn = rnd.choice([ISN, WRAP_ISN, 0xFFFFF000])
    cuts = sorted(rnd.sample(range(1, len(body) + 1), min(len(body), 20)))
    pieces = []
    prev = 0
    for cut in [*cuts, len(body)]:
        if cut > prev:
            lo = max(0, prev - rnd.randrange(0, 4))  # some overlap with the previous piece
            pieces.append(seg(isn + 1 + lo, body[lo:cut]))
            prev = cut
    pieces += rnd.sample(pieces, k=min(5, len(pieces)))
    rnd.shuffle(pieces)
    fin = seg(isn + 1 + len(body), flags=FIN | ACK)
    pieces.insert(rnd.randrange(len(pieces) + 1), fin)
    events = run([seg(isn, flags=SYN), *pieces])
    assert stream(events) == body
    assert ends(events) == [FlowEnded(KEY, 1.0, "fin")]


def test_advance_accounts_in_order_data_like_feed_and_refuses_everything_else() -> None:
    """``advance`` (playback's fast path) is feed's in-order case without the objects: the
    same stream offsets and stats, and False (nothing changed) whenever feed would differ."""
    fast, slow = Reassembler(), Reassembler()
    for r in (fast, slow):
        r.feed(seg(99, flags=SYN))
    assert not fast.advance(KEY._replace(sport=1), 1.0, 100, 5)  # unknown flow
    assert not fast.advance(KEY, 1.0, 105, 5)  # not the next byte (a gap)
    assert fast.advance(KEY, 1.0, 100, 5)
    assert slow.feed(seg(100, b"a" * 5)) == [Data(KEY, 1.0, b"a" * 5)]
    assert (fast.stats, fast._flows[KEY].next) == (slow.stats, slow._flows[KEY].next)
    fast.feed(seg(110, b"c" * 5))  # out of order: now buffered
    assert not fast.advance(KEY, 1.0, 105, 5)
    assert stream(fast.feed(seg(105, b"b" * 5))) == b"b" * 5 + b"c" * 5
    assert fast.advance(KEY, 1.5, 115, 5)
    assert not fast.advance(KEY, 3.0, 120, 5)  # a second later: feed must sweep idle flows
    fast.feed(seg(125, flags=FIN | ACK, ts=3.0))  # a FIN beyond a gap: pending
    assert not fast.advance(KEY, 3.0, 120, 5)
    assert fast.stats.delivered_bytes == 20


def test_a_filled_gap_delivers_each_buffered_segment_as_fed_not_a_joined_copy() -> None:
    """Payloads that are views (of an mmap'd pcap) stay views when a gap is filled: one
    ``Data`` per buffered segment, in stream order, only the overlap cut off, nothing copied."""
    captured = memoryview(b"hello world!")
    events = run(
        [seg(ISN, flags=SYN), seg(ISN + 7, captured[6:]), seg(ISN + 1, captured[:8])],  # type: ignore[arg-type]
        close=False,
    )
    data = [e.data for e in events if isinstance(e, Data)]
    assert [bytes(d) for d in data] == [b"hello wo", b"rld!"]
    assert all(isinstance(d, memoryview) and d.obj is captured.obj for d in data)
