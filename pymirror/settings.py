"""The one root ``Settings`` object, built once at start-up and passed down.

Environment variables use the ``PYMIRROR_`` prefix and ``__`` between a group
and its field (``PYMIRROR_LOG__LEVEL=debug``). Every field documents its unit
and why its default is what it is. Invalid values raise ``ConfigError`` at
start-up, never deep inside a running worker.
"""

from __future__ import annotations

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from pymirror.errors import ConfigError
from pymirror.logs import LogFormat
from splitter.errors import NameFormatError
from splitter.naming import (
    DEFAULT_KAFKA_TOPIC_FORMAT,
    DEFAULT_SQS_QUEUE_FORMAT,
    Broker,
    NameFormat,
)


class LogSettings(BaseModel):
    """Logging output."""

    level: str = Field("info", description="Minimum level: debug, info, warning or error.")
    format: LogFormat = Field(
        "auto", description="json | console | auto (console on a terminal, JSON otherwise)."
    )


class TrafficSettings(BaseModel):
    """Bounds of live mirroring and replay (``pymirror mirror``, ``pymirror replay``)."""

    write_timeout: float = Field(
        5.0, gt=0, description="Seconds a write to --to may stay unsent before its flow drops."
    )
    flow_backlog_bytes: int = Field(
        4 << 20, gt=0, description="Bytes one replayed flow may queue (4 MiB) before it drops."
    )
    idle_timeout: float = Field(
        120.0, gt=0, description="Seconds without a segment before a captured flow ends."
    )
    max_connections: int = Field(
        1024, gt=0, description="Concurrent local connections to --to; more flows are dropped."
    )


def _name_format(template: str, broker: Broker) -> NameFormat:
    """``template`` as a :class:`NameFormat`; ``ValueError`` (-> ``ConfigError``) if bad."""
    try:
        return NameFormat(template, broker)
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
        _name_format(value, "kafka")
        return value

    @property
    def name_format(self) -> NameFormat:
        """The validated topic format, ready to render temporary topic names."""
        return NameFormat(self.topic_format, "kafka")


class SqsSettings(BaseModel):
    """SQS splitting (``pymirror worker sqs``, ``pymirror demo``, the operator's SQS side)."""

    queue_format: str = Field(
        DEFAULT_SQS_QUEUE_FORMAT,
        description="Temporary queue names; {{RANDOM}}, {{FALLBACK}} and {{ORIGINAL_QUEUE}} "
        "are required. Also read from OPERATOR_SQS_SPLITTING_QUEUE_FORMAT (mirrord's name).",
    )
    endpoint_url: str | None = Field(
        None, description="SQS endpoint; unset = AWS itself (region and credentials from AWS_*)."
    )
    region: str = Field("us-east-1", description="AWS region of the queues.")
    receivers: int = Field(
        4,
        gt=0,
        le=64,
        description="Concurrent long polls on the original queue; 4 keeps "
        "SendMessageBatch full at a few thousand messages/s.",
    )
    wait_seconds: int = Field(20, ge=0, le=20, description="Long-poll wait, seconds (SQS max).")
    linger: float = Field(
        0.02, gt=0, description="Seconds a partly-full batch waits for more entries."
    )
    max_in_hand: int = Field(
        1000,
        gt=0,
        description="Messages received but not yet deleted; bounds memory and "
        "the duplicates a crash can cause.",
    )
    shutdown_grace: float = Field(
        10.0,
        gt=0,
        description="Seconds SIGTERM gives in-hand messages before releasing them; "
        "well under Kubernetes' default 30 s grace period.",
    )
    drain_timeout: float | None = Field(
        None,
        ge=0,
        description="Seconds the last session's end waits for the workload to "
        "drain the fallback queue; unset = wait, 0 = skip (leftovers go back to the original).",
    )

    @field_validator("queue_format")
    @classmethod
    def _valid_queue_format(cls, value: str) -> str:
        _name_format(value, "sqs")
        return value

    @property
    def name_format(self) -> NameFormat:
        return NameFormat(self.queue_format, "sqs")


class Settings(BaseSettings):
    """Root of all pymirror settings."""

    model_config = SettingsConfigDict(
        env_prefix="PYMIRROR_", env_nested_delimiter="__", extra="forbid"
    )

    log: LogSettings = Field(default_factory=LogSettings)
    traffic: TrafficSettings = Field(default_factory=TrafficSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    sqs: SqsSettings = Field(default_factory=SqsSettings)
    operator_sqs_queue_format: str | None = Field(
        None,
        validation_alias="OPERATOR_SQS_SPLITTING_QUEUE_FORMAT",
        exclude=True,
        description="mirrord's env name for sqs.queue_format; wins when set.",
    )
    operator_kafka_topic_format: str | None = Field(
        None,
        validation_alias="OPERATOR_KAFKA_SPLITTING_TOPIC_FORMAT",
        exclude=True,
        description="mirrord's env name for kafka.topic_format; wins when set.",
    )

    @field_validator("operator_kafka_topic_format", "operator_sqs_queue_format")
    @classmethod
    def _valid_operator_format(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _name_format(value, "kafka" if "kafka" in str(info.field_name) else "sqs")
        return value

    @model_validator(mode="after")
    def _operator_format_aliases(self) -> Settings:
        """mirrord's operator variables win over ``PYMIRROR_*`` for the name formats."""
        if self.operator_sqs_queue_format is not None:
            self.sqs.queue_format = self.operator_sqs_queue_format
        if self.operator_kafka_topic_format is not None:
            self.kafka.topic_format = self.operator_kafka_topic_format
        return self


def load_settings(**overrides: object) -> Settings:
    """Build ``Settings`` from the environment plus explicit overrides, or raise ``ConfigError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}. Fix the PYMIRROR_* environment variables or flags."
        ) from e
