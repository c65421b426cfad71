"""Ending a Kafka session and handing a topic back to the workload.

* :func:`end_session` - the session's topic is read from the workload
  group's committed offsets (what the developer's process consumed) to its
  real end; every leftover record is routed again through the remaining
  sessions (else the fallback), acknowledged, and only then is the topic
  deleted. A developer quitting loses nobody's records.
* :func:`hand_back` - after the worker stopped consuming the original (its
  offsets committed), wait until the workload's group has zero lag on the
  fallback topic, bounded by the drain timeout (None = wait, 0 = skip); the
  records still unconsumed then are produced back to the original (same
  partition), not dropped. A fallback partition the group never committed
  counts as the workload would read it: from its start if the workload's
  ``auto.offset.reset`` is earliest (waited for), else (latest, the default,
  or none) the workload would never read what is there, so it is not waited
  for - it would be, forever - and moved back to the original at the end. The fallback is deleted by
  :func:`delete_topic` once the workload no longer reads it (after the env restore).

"Real end" matters: Tansu under-reports end offsets after batched produce,
so lag is measured against :meth:`TopicReader.end_offsets`, which probes
past the listed end.

Both return how many records they moved and report progress through optional
callbacks (``on_lag`` while the workload drains, ``on_returning`` with what is left
to move back): the worker keeps its own counters (this module never imports it).
The worker runs them under :func:`retrying`: a broker error during either is
retried with backoff, never the end of the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from splitter.backoff import Backoff
from splitter.errors import KafkaError
from splitter.filters import MessageView
from splitter.kafka.clients import KafkaClients
from splitter.kafka.forwarding import Forwarder
from splitter.kafka.records import KafkaRecord, Partition
from splitter.kafka.settings import KafkaSettings
from splitter.kafka.translating import forward_failure
from splitter.routing import Router

log = structlog.get_logger()

T = TypeVar("T")


async def _await_all(futures: list[asyncio.Future[Any]], where: str) -> None:
    if not futures:
        return
    await asyncio.wait(futures)
    for future in futures:
        error = forward_failure(future, where)
        if error is not None:
            raise error


async def end_session(
    clients: KafkaClients,
    forwarder: Forwarder,
    *,
    topic: str,
    group_id: str,
    router: Callable[[], Router],
    settings: KafkaSettings,
    wanted: Callable[[], bool] = lambda: True,
    deleting: Callable[[], AbstractContextManager[bool]] | None = None,
    mirror: bool = False,
) -> int:
    """Route a session topic's unconsumed records again, then delete it; return how many.

    A ``mirror`` session's topic holds copies (the workload got every record too):
    its leftovers are dropped, never routed again. ``deleting()`` (default: ``wanted``
    once) is the last check, held around the delete: a session listed again meanwhile
    (same topic) keeps its topic (records already routed again stay where they went),
    and none can be listed while the delete runs."""
    last_check = deleting or (lambda: contextlib.nullcontext(wanted()))
    async with clients.admin() as admin:
        if not await admin.exists(topic):
            log.info("kafka session topic already gone", session_topic=topic)
            return 0
        if mirror:
            with last_check() as still_wanted:
                if still_wanted:
                    await admin.delete_topic(topic)
                    log.info("kafka mirror session topic deleted; its copies dropped", topic=topic)
            return 0
        partitions = await admin.partitions(topic)
        committed = await admin.committed(group_id, topic, partitions)
        futures: list[asyncio.Future[Any]] = []

        async def reroute(partition: Partition, records: list[KafkaRecord]) -> None:
            current = router()
            for record in records:
                for target in current.route(
                    MessageView.from_kafka(record.headers, record.value, current.names)
                ):
                    futures.append(
                        await forwarder.send(
                            target.destination,
                            partition[1],
                            record.key,
                            record.value,
                            record.headers,
                            record.timestamp,
                        )
                    )

        async with clients.reader() as reader:
            starts = {(topic, p): committed[p] for p in range(partitions)}
            await reader.read_to_end(starts, reroute, idle_ms=settings.end_probe_ms)
        await _await_all(futures, f"re-routing {topic!r}")
        with last_check() as still_wanted:
            if not still_wanted:
                log.info("kafka session listed again; its topic is kept", session_topic=topic)
                return len(futures)
            await admin.delete_topic(topic)
    return len(futures)


@dataclass(frozen=True)
class FallbackLag:
    """What the workload's group has not consumed of the fallback, per partition.

    ``waiting``: (committed offset, or the start where the workload's
    ``auto.offset.reset`` is earliest, real end) of the partitions the
    workload will read - the drain waits for these. ``skipped``: (start, end)
    of partitions the group never committed whose records its reset policy
    (latest, none) would never read - not waited for (they would be waited
    for forever), moved back to the original at the end, never dropped.
    """

    waiting: dict[int, tuple[int, int]]
    skipped: dict[int, tuple[int, int]]

    @property
    def lag(self) -> int:
        return sum(end - start for start, end in self.waiting.values())

    def leftovers(self) -> dict[int, tuple[int, int]]:
        return {**self.skipped, **self.waiting}


async def fallback_lag(
    clients: KafkaClients,
    *,
    fallback: str,
    group_id: str,
    partitions: int,
    idle_ms: int,
    reset: str = "latest",
) -> FallbackLag:
    """The group's lag on ``fallback``; ``reset``: the workload's ``auto.offset.reset``."""
    async with clients.admin() as admin:
        committed = await admin.committed(group_id, fallback, partitions)
    tps = [(fallback, p) for p in range(partitions)]
    async with clients.reader() as reader:
        ends = await reader.end_offsets(tps, idle_ms=idle_ms)
        firsts = await reader.listed_start_offsets(tps)
    waiting: dict[int, tuple[int, int]] = {}
    skipped: dict[int, tuple[int, int]] = {}
    for (_t, p), end in ends.items():
        start = committed[p]
        first = firsts.get((fallback, p), 0)
        if start is not None:
            if start < end:
                waiting[p] = (start, end)
        elif first < end:
            (waiting if reset == "earliest" else skipped)[p] = (first, end)
    return FallbackLag(waiting, skipped)


async def hand_back(
    clients: KafkaClients,
    forwarder: Forwarder,
    *,
    original: str,
    fallback: str,
    group_id: str,
    settings: KafkaSettings,
    on_lag: Callable[[int], None] | None = None,
    on_returning: Callable[[int], None] | None = None,
) -> int:
    """Wait for the workload to drain ``fallback``; move leftovers to ``original``.

    Waits ``settings.drain_timeout`` at most, looking every
    ``settings.lag_poll_interval`` (``on_lag`` gets each measured lag).
    ``on_returning`` gets the records left to move back, before and after the move.
    Returns how many records were moved back. Deleting the fallback is a
    separate step (:func:`delete_topic`): it must wait until the workload no
    longer reads it (env restored), or a consumer would re-create it. The
    caller bounds it on SIGTERM by cancelling it: what was moved back before
    is moved again by the resumed hand-back (duplicates, never a loss).
    """
    async with clients.admin() as admin:
        if not await admin.exists(fallback):
            return 0
        partitions = await admin.partitions(fallback)
    reset = clients.consumer_kwargs(group_id, {})["auto_offset_reset"]
    # A poll, not a retry: the same interval every time, bounded by the drain timeout.
    timeout = settings.drain_timeout
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        lag = await fallback_lag(
            clients,
            fallback=fallback,
            group_id=group_id,
            partitions=partitions,
            idle_ms=settings.end_probe_ms,
            reset=reset,
        )
        if on_lag is not None:
            on_lag(lag.lag)
        if not lag.waiting:
            break
        if deadline is not None and time.monotonic() >= deadline:
            log.warning("kafka drain timed out", fallback=fallback, lag=lag.lag)
            break
        await asyncio.sleep(settings.lag_poll_interval)
    futures: list[asyncio.Future[Any]] = []

    async def move_back(partition: Partition, records: list[KafkaRecord]) -> None:
        for record in records:
            futures.append(
                await forwarder.send(
                    original,
                    partition[1],
                    record.key,
                    record.value,
                    record.headers,
                    record.timestamp,
                )
            )

    leftovers = lag.leftovers()
    if on_returning is not None:
        on_returning(sum(end - start for start, end in leftovers.values()))
    if leftovers:
        if lag.skipped:
            log.info(
                "kafka fallback partitions the workload never committed are moved back",
                fallback=fallback,
                partitions=sorted(lag.skipped),
                reset=reset,
            )
        async with clients.reader() as reader:
            await reader.read_to_end(
                {(fallback, p): s for p, (s, _e) in leftovers.items()},
                move_back,
                idle_ms=settings.end_probe_ms,
            )
        await _await_all(futures, f"returning {fallback!r} to {original!r}")
    if on_returning is not None:
        on_returning(0)
    return len(futures)


async def retrying(work: Callable[[], Awaitable[T]], backoff: Backoff, what: str) -> T:
    """Run ``work()`` until it succeeds: a ``KafkaError`` is logged and retried after the
    backoff's next delay (a session end or hand-back read again from the committed
    offsets moves some records twice, never none). Cancel it to give up."""
    while True:
        try:
            return await work()
        except KafkaError as e:
            log.warning(f"kafka {what} failed; retrying", error=str(e))
            await backoff.sleep()


async def delete_topic(clients: KafkaClients, topic: str) -> None:
    """Delete a temporary topic (already gone is fine)."""
    async with clients.admin() as admin:
        await admin.delete_topic(topic)
