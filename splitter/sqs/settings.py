"""Settings of SQS splitting: the one home of its defaults (see ``pymirror.settings``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from splitter.errors import NameFormatError
from splitter.naming import DEFAULT_SQS_QUEUE_FORMAT, NameFormat


def _name_format(template: str) -> NameFormat:
    """``template`` as a :class:`NameFormat`; ``ValueError`` (-> ``ConfigError``) if bad."""
    try:
        return NameFormat(template, "sqs")
    except NameFormatError as e:
        raise ValueError(str(e)) from e


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
        _name_format(value)
        return value

    @property
    def name_format(self) -> NameFormat:
        return NameFormat(self.queue_format, "sqs")
