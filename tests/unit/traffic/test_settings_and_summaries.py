"""Traffic defaults live once (traffic.limits); stats become dicts one way (traffic.summaries)."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field

import pytest

from traffic.limits import Limits, ReplayLimits
from traffic.mirroring import MirrorStats
from traffic.playback import PlaybackStats
from traffic.reassembly import Limits as ReassemblyLimits
from traffic.replaying import ReplayLimits as ReplayingLimits
from traffic.replaying import ReplayStats
from traffic.settings import TrafficSettings
from traffic.summaries import OMIT, Summary

pytestmark = pytest.mark.unit


def test_settings_default_to_the_limits_defaults() -> None:
    settings = TrafficSettings()
    assert settings.reassembly_limits() == Limits()
    assert settings.replay_limits() == ReplayLimits()
    # The modules that use them see the same classes (one home, re-exported).
    assert (ReassemblyLimits, ReplayingLimits) == (Limits, ReplayLimits)


def test_settings_carry_into_the_limits_and_leave_the_rest_default() -> None:
    settings = TrafficSettings(
        write_timeout=1.5, flow_backlog_bytes=1000, idle_timeout=9.0, max_connections=3
    )
    assert settings.reassembly_limits() == dataclasses.replace(Limits(), idle_timeout=9.0)
    assert settings.replay_limits() == dataclasses.replace(
        ReplayLimits(), write_timeout=1.5, max_flow_backlog=1000, max_connections=3
    )


def test_every_setting_says_its_unit() -> None:
    for name, info in TrafficSettings.model_fields.items():
        assert info.description, name
        assert any(u in info.description for u in ("Seconds", "Bytes", "connections")), name


def test_stats_dicts_flatten_the_replay_counters_in_field_order() -> None:
    replay = ReplayStats(flows=2, bytes_sent=10, reasons=Counter({"rst": 1}))
    mirror = MirrorStats(packets=5, segments=4, replay=replay, error=RuntimeError("x"))
    assert mirror.as_dict() == {
        "packets": 5,
        "handoff_dropped": 0,
        "kernel_drops": 0,
        "truncated_packets": 0,
        "truncated_bytes": 0,
        "segments": 4,
        "flows": 2,
        "flows_completed": 0,
        "flows_dropped": 0,
        "errors": 0,
        "bytes_sent": 10,
        "bytes_dropped": 0,
        "response_bytes": 0,
        "reasons": {"rst": 1},
    }
    assert type(mirror.as_dict()["reasons"]) is dict  # JSON-ready, not a Counter
    playback = PlaybackStats(passes=1, capture_seconds=1.23456, wall_seconds=0.1)
    summary = playback.as_dict()
    assert list(summary)[:11] == [
        "passes",
        "packets",
        "requests_matched",
        "requests_filtered",
        "flows_not_http",
        "filter_timeouts",
        "truncated_packets",
        "truncated_bytes",
        "interrupted",
        "capture_seconds",
        "wall_seconds",
    ]
    assert (summary["capture_seconds"], summary["wall_seconds"]) == (1.235, 0.1)
    assert {"error", "replay"}.isdisjoint(summary)


def test_a_nested_summary_may_not_repeat_a_key() -> None:
    @dataclass
    class Clashing(Summary):
        flows: int = 0
        replay: ReplayStats = field(default_factory=ReplayStats)
        note: str = field(default="", metadata=OMIT)

    with pytest.raises(ValueError, match=r"Clashing\.replay repeats \['flows'\]"):
        Clashing().as_dict()
