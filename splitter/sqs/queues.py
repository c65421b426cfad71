"""Provisioning temporary SQS queues: plan, create, delete and find them (docs/how-it-works.md).

A temporary queue (a session's, or the fallback the workload reads) is shaped
like the original: attributes and Policy from :mod:`splitter.sqs.attributes`,
tags from :mod:`splitter.sqs.tags`, its name from the queue format
(:mod:`splitter.sqs.queue_names` reads names back). This module wraps those
pure helpers around :class:`~splitter.sqs.client.SqsClient`. Everything is
checked before the one write (``CreateQueue``): a format the name cannot fit
(``NameFormatError``), a missing original (``SqsQueueMissingError``), too
many or too long tags (``SqsError``) - a failure leaves no queue behind.
:func:`plan_temporary_queue` does all of that without writing, so the caller
can record the name in Kubernetes before :func:`create_planned_queue`
creates it (``CreateQueue`` with the same name and attributes is idempotent).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from splitter.errors import NotOursError, SqsError, SqsQueueMissingError
from splitter.naming import NameFormat
from splitter.sqs.attributes import temporary_arn, temporary_attributes
from splitter.sqs.client import SqsClient
from splitter.sqs.queue_names import listing_prefix, matches_format, queue_name
from splitter.sqs.tags import (
    CREATED_BY,
    TAG_CREATED_BY,
    TAG_FALLBACK,
    TAG_MODE,
    TAG_ORIGINAL,
    TAG_ROUTED,
    TAG_SESSION,
    bookkeeping_tags,
    temporary_tags,
)


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
    #: The session's ``queue_mode`` as tagged at creation (None: not tagged).
    mode: str | None = None
    #: A split worker routed to it (:data:`~splitter.sqs.tags.TAG_ROUTED`).
    routed: bool = False


async def check_owned(
    client: SqsClient,
    url: str,
    name_format: NameFormat,
    original: str,
    *,
    fallback: bool,
    what: str,
) -> dict[str, str]:
    """Raise :class:`NotOursError` unless ``url`` is a temporary queue pymirror made for
    ``original`` - the fallback if ``fallback``, else a session's: its name fits the
    format and it carries the bookkeeping tags. ``what`` names it in the message.
    Returns the queue's tags (read once: the caller need not read them again).

    A split drains and deletes its fallback and its session queues, so a mistyped name
    must be refused before anything is read from it."""
    original_name = queue_name(original)
    name = queue_name(url)
    problems = []
    if not matches_format(name, name_format, original_name):
        problems.append(
            f"its name does not fit the queue format {name_format.template!r} for {original_name!r}"
        )
    tags = await client.tags(url)
    kind = "the fallback" if fallback else "a session queue"
    if tags.get(TAG_CREATED_BY) != CREATED_BY:
        problems.append(f"it lacks the tag {TAG_CREATED_BY}={CREATED_BY}")
    elif tags.get(TAG_ORIGINAL) != original_name:
        problems.append(f"its tag {TAG_ORIGINAL} is {tags.get(TAG_ORIGINAL)!r}")
    elif (tags.get(TAG_FALLBACK) == "true") != fallback:
        problems.append(f"its tags do not make it {kind}")
    if problems:
        raise NotOursError(
            f"refusing {what} {url}: pymirror drains and deletes it when the split ends, "
            f"but pymirror did not create it as {kind} of {original_name!r} "
            f"({'; '.join(problems)}). Check the queue name; use a queue made by pymirror "
            "for this split (splitter.sqs.queues.create_temporary_queue, or the operator)"
        )
    return tags


async def mark_routed(client: SqsClient, url: str) -> None:
    """Tag a session queue as routed to (:data:`~splitter.sqs.tags.TAG_ROUTED`)."""
    await client.tag_queue(url, {TAG_ROUTED: "true"})


async def plan_temporary_queue(
    client: SqsClient,
    original: str,
    name_format: NameFormat,
    *,
    fallback: bool,
    session: str | None,
    registry_tags: Mapping[str, str] | None = None,
    random_digits: str | None = None,
    mode: str | None = None,
) -> QueuePlan:
    """Read and check everything for a temporary queue like ``original``; write nothing.

    ``mode`` (a session's ``queue_mode``) is tagged, so an end resumed after a restart
    drops a ``mirror`` session's copies instead of routing them again."""
    original_name = queue_name(original)
    name_format.check(original_name)
    bookkeeping = bookkeeping_tags(original_name, fallback=fallback, session=session, mode=mode)
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
    mode: str | None = None,
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
        mode=mode,
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


async def find_temporary_queues(
    client: SqsClient,
    original: str,
    name_format: NameFormat,
    *,
    skip: Collection[str] = (),
) -> list[FoundQueue]:
    """Queues pymirror created for ``original`` (name or URL), for garbage collection.

    Candidates are listed by the format's literal prefix and kept when their
    name fits the format for this original (:func:`matches_format`); the
    bookkeeping tags then decide - a queue without them is not pymirror's,
    whatever its name. A queue deleted meanwhile is skipped, and so is any queue
    named in ``skip`` (its tags are not read: one call saved per queue the caller
    knows already, e.g. a worker's live sessions).
    """
    original_name = queue_name(original)
    found = []
    for url in await client.list_queues(listing_prefix(name_format)):
        name = queue_name(url)
        if name in skip or not matches_format(name, name_format, original_name):
            continue
        try:
            tags = await client.tags(url)
        except SqsQueueMissingError:
            continue
        if tags.get(TAG_CREATED_BY) != CREATED_BY or tags.get(TAG_ORIGINAL) != original_name:
            continue
        fallback = tags.get(TAG_FALLBACK) == "true"
        found.append(
            FoundQueue(
                name,
                url,
                original_name,
                fallback,
                tags.get(TAG_SESSION),
                tags.get(TAG_MODE),
                tags.get(TAG_ROUTED) == "true",
            )
        )
    return found
