"""The demo's scenario and its verdict (pure: no I/O).

Two developers split the workload's SQS queue and Kafka topic with overlapping filters
on the ``author`` message attribute (record header):

* alice: ``^(alice|pair)$`` (her session starts first: sequence 1);
* bob: ``^(bob|pair)$``.

Every batch sends, to the queue and to the topic alike, messages by ``alice``, ``bob``,
``pair`` (matches both) and ``carol`` (matches neither). Where each must end up follows
the routing rules (first matching session in start order, else the fallback, i.e. the
workload):

1. ``both``: both sessions run: alice and pair -> alice, bob -> bob, carol -> workload;
2. ``alice-leaves``: alice's consumer stops reading, the batch piles up in her temporary
   queue, then her command exits and her session ends: her leftovers are routed
   again through the remaining session: pair -> bob, alice -> workload (a topic's
   leftovers are the records her consumer did not commit);
3. ``handed-back``: after bob's session ended too (the queue handed back, the
   workload's env restored): everything -> workload.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

WORKLOAD = "workload"
DEVELOPERS: dict[str, str] = {"alice": "^(alice|pair)$", "bob": "^(bob|pair)$"}
AUTHORS = ("alice", "bob", "pair", "carol")
PHASES = ("both", "alice-leaves", "handed-back")
#: How a message travels, and the prefix of its id.
VIAS = {"sqs": "m", "kafka": "k"}


@dataclass(frozen=True)
class Message:
    id: str
    #: ``sqs`` or ``kafka``.
    via: str
    phase: str
    author: str
    #: The consumer that must receive it, in the end.
    expected: str
    #: Where it goes first (phase 2: alice's temporary queue, before her leftovers move).
    first: str

    @property
    def body(self) -> dict[str, str]:
        return {"id": self.id, "author": self.author, "phase": self.phase}


#: The sessions running while a phase's batch is sent, and once its leftovers have moved.
SESSIONS_AT_SEND = {"both": ("alice", "bob"), "alice-leaves": ("alice", "bob"), "handed-back": ()}
SESSIONS_AFTER = {"both": ("alice", "bob"), "alice-leaves": ("bob",), "handed-back": ()}


def destination(author: str, sessions: Sequence[str]) -> str:
    """The first session (in start order) whose filter matches ``author``, else the workload
    (regexes search case-insensitively, as the split worker's do)."""
    for name in sessions:
        if re.search(DEVELOPERS[name], author, re.IGNORECASE):
            return name
    return WORKLOAD


def batch(phase: str, per_author: int, start: int, via: str = "sqs") -> list[Message]:
    """``per_author`` messages by each author, numbered from ``start`` (``m0``, ... for
    SQS, ``k0``, ... for Kafka)."""
    messages = []
    n = start
    for _ in range(per_author):
        for author in AUTHORS:
            first = destination(author, SESSIONS_AT_SEND[phase])
            expected = first
            if first not in SESSIONS_AFTER[phase]:  # an ended session's leftover
                expected = destination(author, SESSIONS_AFTER[phase])
            messages.append(Message(f"{VIAS[via]}{n}", via, phase, author, expected, first))
            n += 1
    return messages


@dataclass(frozen=True)
class Delivery:
    consumer: str
    id: str
    via: str
    source: str


@dataclass
class Verdict:
    sent: dict[str, int]
    delivered: dict[str, int]
    lost: int
    duplicated: int
    misrouted: int
    temporary_left: int
    env_restored: bool
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.problems
            and self.lost == 0
            and self.duplicated == 0
            and self.misrouted == 0
            and self.temporary_left == 0
            and self.env_restored
            and sum(self.delivered.values()) == sum(self.sent.values())
        )

    def line(self) -> str:
        """The one line the demo ends with (and tests parse)."""
        sent = " ".join(f"sent.{k}={v}" for k, v in self.sent.items())
        delivered = " ".join(f"delivered.{k}={v}" for k, v in self.delivered.items())
        return (
            f"verdict: sent={sum(self.sent.values())} {sent} {delivered} lost={self.lost} "
            f"duplicated={self.duplicated} misrouted={self.misrouted} "
            f"temporary_left={self.temporary_left} "
            f"env_restored={'yes' if self.env_restored else 'no'} "
            f"result={'PASS' if self.ok else 'FAIL'}"
        )


def verdict(
    messages: Sequence[Message],
    deliveries: Iterable[Delivery],
    *,
    temporary_left: int,
    env_restored: bool,
    problems: Sequence[str] = (),
) -> Verdict:
    """Counts every message against where it had to go: lost (nobody got it), duplicated
    (deliveries past the first), misrouted (a consumer other than the expected one got it)."""
    expected: Mapping[str, str] = {m.id: m.expected for m in messages}
    got: dict[str, list[str]] = {m.id: [] for m in messages}
    unknown = 0
    for d in deliveries:
        if d.id in got:
            got[d.id].append(d.consumer)
        else:
            unknown += 1
    delivered: Counter[str] = Counter({WORKLOAD: 0, **{name: 0 for name in DEVELOPERS}})
    lost = duplicated = misrouted = 0
    for message_id, consumers in got.items():
        if not consumers:
            lost += 1
            continue
        duplicated += len(consumers) - 1
        misrouted += sum(1 for c in consumers if c != expected[message_id])
        delivered[consumers[0]] += 1
    found = list(problems)
    if unknown:
        found.append(f"{unknown} deliveries of messages the demo did not send")
    sent = Counter(m.via for m in messages)
    return Verdict(
        sent={via: sent[via] for via in VIAS if sent[via]},
        delivered=dict(delivered),
        lost=lost,
        duplicated=duplicated,
        misrouted=misrouted + unknown,
        temporary_left=temporary_left,
        env_restored=env_restored,
        problems=found,
    )
