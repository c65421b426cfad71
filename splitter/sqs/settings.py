"""Settings of SQS splitting: the one home of its defaults (see ``pymirror.settings``).

:class:`SqsSettings` is composed into the root ``Settings`` as ``sqs`` (environment
``PYMIRROR_SQS__<FIELD>``). The split worker, the forwarding pipeline and the
session-end / hand-back logic read their bounds from it and nowhere else; the
CLI overrides fields with ``settings.sqs.model_copy(update=...)`` and tests build
an ``SqsSettings(...)`` with small timeouts.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator

from splitter.naming import DEFAULT_SQS_QUEUE_FORMAT, NameFormat, checked_format


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
    visibility_timeout: int | None = Field(
        None,
        ge=0,
        le=43200,
        description="Seconds a message received from the original stays invisible (SQS allows "
        "0-43200); unset = the queue's own VisibilityTimeout, as the workload would see it. "
        "Messages held for half of it get it restarted, so a slow forward causes no duplicate.",
    )
    linger: float = Field(
        0.02,
        gt=0,
        description="Seconds a partly-full send batch waits for more entries; it waits only "
        "when its destination's recent rate (last second or so) expects another entry within "
        "that time, or in a backlog, and goes at once otherwise.",
    )
    backlog_linger: float = Field(
        1.0,
        gt=0,
        description="Seconds a partly-full send or delete batch waits to fill while "
        "receives come back full (a backlog: the messages waited in the queue anyway); 1 s "
        "keeps SendMessageBatch near 10 entries at saturation and adds at most 1 s of latency.",
    )
    delete_linger: float = Field(
        0.0,
        ge=0,
        description="Seconds a partly-full DeleteMessageBatch on a standard queue waits for "
        "more entries (at least linger), across receives. A receive's messages are deleted "
        "in one call already (once they all settled), so this saves little (at most one "
        "call per receive), and a crash in that time delivers those messages again (at "
        "most 9 per queue): off (0) by default. FIFO queues always delete after linger: an "
        "undeleted message holds back its group.",
    )
    max_in_hand: int = Field(
        1000,
        gt=0,
        description="Messages received but not yet deleted; bounds memory and "
        "the duplicates a crash can cause.",
    )
    batch_calls: int = Field(
        16,
        gt=0,
        le=64,
        description="Batch calls (send, delete, change visibility) in flight at once; 16 keeps "
        "a few thousand messages/s moving and, with the receivers, stays inside the client's "
        "64-connection pool.",
    )
    retry_for: float = Field(
        30.0,
        gt=0,
        description="Seconds a retriable forward or delete failure (throttling, a server "
        "fault, the endpoint unreachable) is retried with backoff before the message is "
        "released to be received again; 30 s rides out a throttling burst or a brief outage.",
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
    drain_poll: float = Field(
        1.0,
        gt=0,
        description="Seconds between two looks at the counts of a queue being drained or "
        "emptied; 1 s is one cheap GetQueueAttributes per second and an empty queue is "
        "confirmed by a second look (the counts are approximate).",
    )
    session_end_concurrency: int = Field(
        8,
        gt=0,
        le=16,
        description="Session ends (an ended session's queue read to the end, its leftovers "
        "routed again, the queue deleted) run at once; each takes about a second at least "
        "(one empty long poll and two looks at the counts), so 8 ends 100 sessions in "
        "about 13 s instead of 100 s. Each end holds up to two connections; up to 16 stays, "
        "with the receivers and batch calls, inside the client's 64-connection pool.",
    )
    session_end_warn_after: float = Field(
        120.0,
        gt=0,
        description="Seconds after which an ended session's queue that is still not empty is "
        "logged as a warning with its counts (visible, in flight, delayed); the end keeps "
        "waiting - it never gives up and keeps the queue - and survives restarts. 120 s "
        "covers messages still in flight at the session's consumer for a default 30 s "
        "visibility timeout.",
    )

    @field_validator("queue_format")
    @classmethod
    def _valid_queue_format(cls, value: str) -> str:
        checked_format(value, "sqs")
        return value

    @property
    def name_format(self) -> NameFormat:
        return NameFormat(self.queue_format, "sqs")
