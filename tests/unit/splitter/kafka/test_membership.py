"""The member file of a worker replica (splitter/kafka/membership.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from splitter.kafka.membership import record_member, recorded_member

pytestmark = pytest.mark.unit


def test_a_recorded_member_id_is_read_back_and_replaced_whole(tmp_path: Path) -> None:
    path = tmp_path / "member"
    assert recorded_member(path) is None
    record_member(path, "pymirror-1-a")
    assert recorded_member(path) == "pymirror-1-a"
    record_member(path, "pymirror-1-b")
    assert recorded_member(path) == "pymirror-1-b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["member"]  # no partial file left


def test_an_empty_or_blank_file_names_no_member(tmp_path: Path) -> None:
    path = tmp_path / "member"
    path.write_text(" \n")
    assert recorded_member(path) is None
    path.write_text("m-1\n")
    assert recorded_member(path) == "m-1"
