"""The split worker's inputs (splitter/kafka/worker.py); its behaviour is in
tests/integration/kafka, on real brokers."""

from __future__ import annotations

from dataclasses import fields

import pytest

from splitter.kafka.settings import KafkaSettings
from splitter.kafka.worker import KafkaWorkerIdentity

pytestmark = pytest.mark.unit


def test_the_identity_holds_what_is_split_and_no_tunable() -> None:
    names = {f.name for f in fields(KafkaWorkerIdentity)}
    assert names == {
        "topic",
        "group_id",
        "fallback_topic",
        "member_file",
        "await_release",
        "delete_fallback",
        "hand_back_file",
    }
    assert not names & set(KafkaSettings.model_fields)  # every default lives in the settings
