"""Temporary SQS queues: named by the queue format, shaped like the original (DESIGN §5).

A temporary queue (a session's, or the fallback the workload reads) copies
the original's writable attributes - FIFO, KMS and redrive settings included
- its tags plus the registry's ``tags`` (registry wins on a clash) plus
pymirror's bookkeeping tags, and its Policy with every occurrence of the
original's ARN and name replaced by the temporary queue's.

Pure helpers (:func:`temporary_attributes`, :func:`temporary_tags`,
:func:`bookkeeping_tags`, :func:`temporary_arn`, :func:`rewrite_policy`,
:func:`matches_format`) take data and return data; the async functions wrap
them around :class:`~splitter.sqs.client.SqsClient`. Everything is checked before
the one write (``CreateQueue``): a format the name cannot fit
(``NameFormatError``), a missing original (``SqsQueueMissingError``), too
many or too long tags (``SqsError``) - a failure leaves no queue behind.
:func:`plan_temporary_queue` does all of that without writing, so the caller
can record the name in Kubernetes before :func:`create_planned_queue`
creates it (``CreateQueue`` with the same name and attributes is idempotent).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from splitter.errors import SqsError, SqsQueueMissingError
from splitter.naming import FIFO_SUFFIX, RANDOM_DIGITS, NameFormat
from splitter.sqs.client import SqsClient

#: Attributes ``CreateQueue`` accepts (the AWS API reference's complete list).
#: An allow-list, not "everything but the read-only ones": real SQS rejects
#: an attribute name it does not know, and servers return extras.
WRITABLE_ATTRIBUTES = frozenset(
    {
        "DelaySeconds",
        "MaximumMessageSize",
        "MessageRetentionPeriod",
        "Policy",
        "ReceiveMessageWaitTimeSeconds",
        "VisibilityTimeout",
        "RedrivePolicy",
        "RedriveAllowPolicy",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "SqsManagedSseEnabled",
        "FifoQueue",
        "ContentBasedDeduplication",
        "DeduplicationScope",
        "FifoThroughputLimit",
    }
)
#: Valid only on a FIFO queue; SQS rejects them (even "false") on a standard one.
FIFO_ONLY_ATTRIBUTES = frozenset(
    {"FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit"}
)

MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256

TAG_PREFIX = "pymirror.dev/"
TAG_CREATED_BY = TAG_PREFIX + "created-by"
TAG_ORIGINAL = TAG_PREFIX + "original-queue"
TAG_SESSION = TAG_PREFIX + "session"
TAG_FALLBACK = TAG_PREFIX + "fallback"
CREATED_BY = "pymirror"

# A queue name's characters; ".fifo" counts as part of the name it ends.
_NAME_CHAR = r"A-Za-z0-9_\-"


# --- pure helpers -------------------------------------------------------------


def queue_name(name_or_url: str) -> str:
    """The queue name in a name or URL (the URL's last path segment)."""
    return name_or_url.rstrip("/").rsplit("/", 1)[-1]


def temporary_arn(original_arn: str, temp_name: str) -> str:
    """The ARN of ``temp_name`` beside the original: same partition, region and account."""
    parts = original_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs":
        raise SqsError(f"{original_arn!r} is not an SQS queue ARN (arn:PARTITION:sqs:...)")
    return ":".join([*parts[:5], temp_name])


def rewrite_policy(policy: str, original_name: str, original_arn: str, temp_name: str) -> str:
    """``policy`` with the original's ARN and name, each as a whole token, made the temp's.

    One left-to-right pass, the ARN tried before the bare name, so replaced
    text is never scanned again. A token ends where a queue name cannot go
    on: ``orders`` is not touched inside ``orders-dlq``, ``my-orders`` or
    ``orders.fifo``. A bare name after ``:`` ends some other ARN (an SNS
    topic, a queue of another account or region) and is left alone; in a
    URL, a ``Sid`` or an ``Id`` it is replaced.
    """
    temp_arn = temporary_arn(original_arn, temp_name)
    pattern = re.compile(
        rf"(?<![{_NAME_CHAR}])(?P<arn>{re.escape(original_arn)})(?![{_NAME_CHAR}]|\.fifo)"
        rf"|(?<![{_NAME_CHAR}:]){re.escape(original_name)}(?![{_NAME_CHAR}]|\.fifo)"
    )
    return pattern.sub(lambda m: temp_arn if m.group("arn") else temp_name, policy)


def temporary_attributes(
    original_attributes: Mapping[str, str],
    original_name: str,
    original_arn: str,
    temp_name: str,
    temp_arn: str,
) -> dict[str, str]:
    """The ``CreateQueue`` attributes of a temporary queue like the original.

    Writable attributes are copied, read-only and unknown ones dropped; FIFO
    attributes only on a FIFO temporary (named ``*.fifo``), where
    ``FifoQueue`` is set explicitly; ``SqsManagedSseEnabled`` only without a
    KMS key (SQS refuses both); the Policy is rewritten (:func:`rewrite_policy`).
    """
    if temporary_arn(original_arn, temp_name) != temp_arn:
        raise SqsError(f"temporary ARN {temp_arn!r} is not {temp_name!r} beside {original_arn!r}")
    fifo = temp_name.endswith(FIFO_SUFFIX)
    attributes = {
        key: value for key, value in original_attributes.items() if key in WRITABLE_ATTRIBUTES
    }
    if not fifo:
        for key in FIFO_ONLY_ATTRIBUTES:
            attributes.pop(key, None)
    else:
        attributes["FifoQueue"] = "true"
    if attributes.get("KmsMasterKeyId"):
        attributes.pop("SqsManagedSseEnabled", None)
    else:
        attributes.pop("KmsMasterKeyId", None)
    if attributes.get("Policy"):
        attributes["Policy"] = rewrite_policy(
            attributes["Policy"], original_name, original_arn, temp_name
        )
    else:
        attributes.pop("Policy", None)
    return attributes


def bookkeeping_tags(original_name: str, *, fallback: bool, session: str | None) -> dict[str, str]:
    """pymirror's own tags: who made the queue, for which original, for whom."""
    if fallback == (session is not None):
        raise ValueError("a temporary queue is either the fallback or a session's, not both")
    tags = {TAG_CREATED_BY: CREATED_BY, TAG_ORIGINAL: original_name}
    if fallback:
        tags[TAG_FALLBACK] = "true"
    else:
        tags[TAG_SESSION] = str(session)
    return tags


def temporary_tags(
    original_tags: Mapping[str, str],
    registry_tags: Mapping[str, str] | None,
    bookkeeping: Mapping[str, str],
) -> dict[str, str]:
    """Original tags, then registry tags over them, then pymirror's over both.

    ``aws:``-prefixed tags are AWS's own and cannot be set, so they are not
    copied. SQS allows at most 50 tags (keys <= 128, values <= 256
    characters); a set that breaks a limit raises ``SqsError`` here - before
    anything is created, and whether or not the server enforces it.
    """
    tags = {k: v for k, v in original_tags.items() if not k.lower().startswith("aws:")}
    tags.update(registry_tags or {})
    tags.update(bookkeeping)
    if len(tags) > MAX_TAGS:
        raise SqsError(
            f"a temporary queue would get {len(tags)} tags ({len(original_tags)} from the "
            f"original, {len(registry_tags or {})} from the registry, {len(bookkeeping)} of "
            f"pymirror's own; overlaps counted once) but SQS allows {MAX_TAGS}; remove "
            f"{len(tags) - MAX_TAGS} from the original queue or the registry's tags"
        )
    for key, value in tags.items():
        if not 1 <= len(key) <= MAX_TAG_KEY:
            raise SqsError(
                f"tag key {key[:40]!r}... has {len(key)} characters; SQS allows 1 to "
                f"{MAX_TAG_KEY}: shorten it in the original queue or the registry"
            )
        if len(value) > MAX_TAG_VALUE:
            raise SqsError(
                f"tag {key!r} has a {len(value)}-character value; SQS allows {MAX_TAG_VALUE}: "
                "shorten it in the original queue or the registry"
            )
    return tags


def matches_format(name: str, name_format: NameFormat, original: str) -> bool:
    """Whether ``name`` could be a temporary name rendered for ``original`` by the format.

    The original's part may be truncated (a non-empty prefix of it, illegal
    characters as ``-``); ``.fifo`` must be where the original has it.
    """
    fifo = original.endswith(FIFO_SUFFIX)
    if name.endswith(FIFO_SUFFIX) != fifo:
        return False
    base = name.removesuffix(FIFO_SUFFIX) if fifo else name
    wanted = re.sub(
        f"[^{_NAME_CHAR}]", "-", original.removesuffix(FIFO_SUFFIX) if fifo else original
    )
    pieces = re.split(r"(\{\{[A-Z_]+\}\})", name_format.template)
    # Every other piece has a fixed length, so with {{FALLBACK}} fixed the split is unique.
    for fallback in ("-fallback-", "-"):
        regex = "".join(
            rf"\d{{{RANDOM_DIGITS}}}"
            if piece == "{{RANDOM}}"
            else re.escape(fallback)
            if piece == "{{FALLBACK}}"
            else f"(?P<original>[{_NAME_CHAR}]+)"
            if piece in ("{{ORIGINAL_QUEUE}}", "{{ORIGINAL_TOPIC}}")
            else re.escape(piece)
            for piece in pieces
        )
        m = re.fullmatch(regex, base)
        if m and wanted.startswith(m.group("original")):
            return True
    return False


# --- I/O ----------------------------------------------------------------------


@dataclass(frozen=True)
class TemporaryQueue:
    """A created temporary queue."""

    name: str
    url: str
    original_url: str
    fallback: bool
    session: str | None


@dataclass(frozen=True)
class QueuePlan:
    """Everything ``CreateQueue`` needs, checked; nothing created yet."""

    name: str
    original_url: str
    attributes: dict[str, str]
    tags: dict[str, str]
    fallback: bool
    session: str | None


@dataclass(frozen=True)
class FoundQueue:
    """A queue pymirror made for an original, as its bookkeeping tags describe it."""

    name: str
    url: str
    original: str
    fallback: bool
    session: str | None


async def plan_temporary_queue(
    client: SqsClient,
    original: str,
    name_format: NameFormat,
    *,
    fallback: bool,
    session: str | None,
    registry_tags: Mapping[str, str] | None = None,
    random_digits: str | None = None,
) -> QueuePlan:
    """Read and check everything for a temporary queue like ``original``; write nothing."""
    original_name = queue_name(original)
    name_format.check(original_name)
    bookkeeping = bookkeeping_tags(original_name, fallback=fallback, session=session)
    try:
        original_url = await client.queue_url(original)
        original_attributes = await client.attributes(original_url)
        original_tags = await client.tags(original_url)
    except SqsQueueMissingError as e:
        raise SqsQueueMissingError(
            f"original queue {original!r} does not exist; check the queue name in the "
            "registry and the SQS endpoint/region the operator uses"
        ) from e
    name = name_format.render(original_name, fallback=fallback, random_digits=random_digits)
    original_arn = original_attributes.get("QueueArn", "")
    attributes = temporary_attributes(
        original_attributes, original_name, original_arn, name, temporary_arn(original_arn, name)
    )
    tags = temporary_tags(original_tags, registry_tags, bookkeeping)
    return QueuePlan(name, original_url, attributes, tags, fallback, session)


async def create_planned_queue(client: SqsClient, plan: QueuePlan) -> TemporaryQueue:
    """Create the queue of a :class:`QueuePlan` (idempotent for the same plan)."""
    url = await client.create_queue(plan.name, plan.attributes, plan.tags)
    return TemporaryQueue(plan.name, url, plan.original_url, plan.fallback, plan.session)


async def create_temporary_queue(
    client: SqsClient,
    original: str,
    name_format: NameFormat,
    *,
    fallback: bool,
    session: str | None,
    registry_tags: Mapping[str, str] | None = None,
    random_digits: str | None = None,
) -> TemporaryQueue:
    """Check everything, then create a queue like ``original`` (name or URL).

    Raises ``NameFormatError`` (the name cannot fit the format),
    ``SqsQueueMissingError`` (no such original) or ``SqsError`` (tags over
    the limits) before creating anything.
    """
    plan = await plan_temporary_queue(
        client,
        original,
        name_format,
        fallback=fallback,
        session=session,
        registry_tags=registry_tags,
        random_digits=random_digits,
    )
    return await create_planned_queue(client, plan)


async def delete_temporary_queue(client: SqsClient, url: str) -> None:
    """Delete a queue pymirror created; a queue already gone is fine.

    Refuses (``SqsError``) to delete a queue without pymirror's ``created-by``
    tag: a wrong URL must never cost anyone their original queue.
    """
    try:
        tags = await client.tags(url)
    except SqsQueueMissingError:
        return
    if tags.get(TAG_CREATED_BY) != CREATED_BY:
        raise SqsError(
            f"refusing to delete {url}: it lacks the tag {TAG_CREATED_BY}={CREATED_BY}, "
            "so pymirror did not create it"
        )
    await client.delete_queue(url)


def _listing_prefix(name_format: NameFormat) -> str:
    """The literal text before the format's first variable: ``ListQueues``' prefix."""
    return name_format.template.split("{{", 1)[0]


async def find_temporary_queues(
    client: SqsClient, original: str, name_format: NameFormat
) -> list[FoundQueue]:
    """Queues pymirror created for ``original`` (name or URL), for garbage collection.

    Candidates are listed by the format's literal prefix and kept when their
    name fits the format for this original (:func:`matches_format`); the
    bookkeeping tags then decide - a queue without them is not pymirror's,
    whatever its name. A queue deleted meanwhile is skipped.
    """
    original_name = queue_name(original)
    found = []
    for url in await client.list_queues(_listing_prefix(name_format)):
        name = queue_name(url)
        if not matches_format(name, name_format, original_name):
            continue
        try:
            tags = await client.tags(url)
        except SqsQueueMissingError:
            continue
        if tags.get(TAG_CREATED_BY) != CREATED_BY or tags.get(TAG_ORIGINAL) != original_name:
            continue
        fallback = tags.get(TAG_FALLBACK) == "true"
        found.append(FoundQueue(name, url, original_name, fallback, tags.get(TAG_SESSION)))
    return found
