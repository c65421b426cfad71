"""Settings of Kafka splitting: the one home of its defaults (see ``pymirror.settings``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from splitter.naming import DEFAULT_KAFKA_TOPIC_FORMAT, NameFormat, checked_format


class KafkaSettings(BaseModel):
    """Kafka splitting (``pymirror worker kafka``, the operator's Kafka side)."""

    topic_format: str = Field(
        DEFAULT_KAFKA_TOPIC_FORMAT,
        description="Temporary topic names; {{RANDOM}}, {{FALLBACK}} and {{ORIGINAL_TOPIC}} "
        "are required. Also read from OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT (mirrord's name).",
    )
    drain_timeout: float | None = Field(
        None,
        ge=0,
        description="Seconds the last session's end waits for the workload to drain the "
        "fallback topic; unset = wait, 0 = skip (leftovers go back to the original).",
    )
    lag_poll_interval: float = Field(
        0.5,
        gt=0,
        description="Seconds between two lag checks while the workload drains the fallback; "
        "each check is a few admin and fetch requests, 0.5 s ends the hand-back promptly.",
    )
    commit_interval: float = Field(
        0.2,
        gt=0,
        description="Seconds between offset commits of a split worker; 0.2 s keeps the "
        "records a crash re-delivers to a fraction of a second's worth.",
    )
    max_uncommitted: int = Field(
        10_000,
        gt=0,
        description="Records a worker may read before their offsets are committed; bounds "
        "the duplicates a crash can cause. From half of it on, commits run early.",
    )
    fetch_max_records: int = Field(
        500, gt=0, description="Records per fetch (aiokafka max_records); 500 is aiokafka's."
    )
    fetch_timeout_ms: int = Field(
        200,
        gt=0,
        description="Milliseconds a fetch waits for records when there are none; 200 ms "
        "keeps stop, hand-back and the fetch bound responsive without busy polling.",
    )
    flush_timeout: float = Field(
        20.0,
        gt=0,
        description="Seconds a worker waits for its forwards in flight before a commit on "
        "shutdown, revocation or rejoin; under Kubernetes' default 30 s grace period.",
    )
    join_attempts: int = Field(
        3,
        gt=0,
        description="Attempts to join the consumer group, and rejoins after the group "
        "coordination broke, before the worker gives up (noida-db can hand a member an "
        "undecodable assignment; a fresh member usually gets a good one at once).",
    )
    join_backoff: float = Field(
        1.0,
        ge=0,
        description="Seconds before the second join attempt; doubles per attempt (1 s, then "
        "2 s): about a rebalance's time on the test brokers.",
    )
    join_backoff_max: float = Field(
        10.0, ge=0, description="Seconds: the longest wait between two join attempts."
    )
    retry_backoff: float = Field(
        0.2,
        ge=0,
        description="Seconds before a fetch that failed with a temporary error is retried; "
        "doubles per failure in a row: a commit interval's time for a leader to move.",
    )
    retry_backoff_max: float = Field(
        5.0, ge=0, description="Seconds: the longest wait between two fetch retries."
    )
    forward_retry_backoff: float = Field(
        0.5,
        ge=0,
        description="Seconds before a record whose forward failed is sent again; doubles per "
        "failure of the same record: a failed forward already waited a request timeout.",
    )
    forward_retry_backoff_max: float = Field(
        30.0,
        ge=0,
        description="Seconds: the longest wait between two attempts to forward one record "
        "(a record that can never be forwarded is retried this often, and reported).",
    )
    topic_replication_factor: int | None = Field(
        None,
        ge=1,
        description="Replicas per partition of a temporary topic; unset = the original's. "
        "Always capped by the live broker count, so a copied min.insync.replicas can be met.",
    )
    partition_check_interval: float = Field(
        30.0,
        gt=0,
        description="Seconds between two checks that the original did not grow past its "
        "temporary topics (a check is one admin round trip; growth is rare).",
    )
    end_probe_ms: int = Field(
        300,
        gt=0,
        description="Milliseconds reading a topic to its end keeps fetching after the last "
        "record before it trusts the end (Tansu 0.6 under-reports listed end offsets after "
        "a batched produce; 300 ms covers it).",
    )

    @field_validator("topic_format")
    @classmethod
    def _valid_topic_format(cls, value: str) -> str:
        checked_format(value, "kafka")
        return value

    @property
    def name_format(self) -> NameFormat:
        """The validated topic format, ready to render temporary topic names."""
        return NameFormat(self.topic_format, "kafka")
