"""Settings of Kafka splitting: the one home of its defaults (see ``pymirror.settings``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from splitter.errors import NameFormatError
from splitter.naming import DEFAULT_KAFKA_TOPIC_FORMAT, NameFormat


def _name_format(template: str) -> NameFormat:
    """``template`` as a :class:`NameFormat`; ``ValueError`` (-> ``ConfigError``) if bad."""
    try:
        return NameFormat(template, "kafka")
    except NameFormatError as e:
        raise ValueError(str(e)) from e


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
    commit_interval: float = Field(
        0.2, gt=0, description="Seconds between offset commits of a split worker."
    )
    max_uncommitted: int = Field(
        10_000,
        gt=0,
        description="Records a worker may read before their offsets are committed; bounds "
        "the duplicates a crash can cause.",
    )
    fetch_max_records: int = Field(
        500, gt=0, description="Records per fetch (aiokafka max_records); 500 is aiokafka's."
    )

    @field_validator("topic_format")
    @classmethod
    def _valid_topic_format(cls, value: str) -> str:
        _name_format(value)
        return value

    @property
    def name_format(self) -> NameFormat:
        """The validated topic format, ready to render temporary topic names."""
        return NameFormat(self.topic_format, "kafka")
