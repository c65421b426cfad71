"""Routing: which destinations one message goes to, given the active sessions.

Sessions are ordered by their ``sequence`` (fixed when the operator accepts
the session; ties are an error). For each message the sessions are walked in
that order:

- a ``mirror`` session whose filter matches gets a copy, and the walk goes on;
- the first ``steal`` session whose filter matches gets the message, and the
  walk stops;
- if no ``steal`` session matched, the message also goes to the fallback.

A :class:`Router` is immutable: a session change builds a new one, and the
worker swaps it in between two messages, so routing switches at a message
boundary.

Per-message cost is kept low as sessions grow by an index built once per
router: a session is a *candidate* for a message only if the message carries
the session's key attribute (one of its filter names) - and, when that
pair's regex is an exact literal such as ``^alice$`` or ``^(a|b)$``, only if
the value is one of those literals (a dict lookup); when it is a literal
prefix such as ``^my-session-``, only if the value starts with it (one dict
lookup per distinct prefix length). Only candidates run their
full filter. Sessions with a ``jq_filter`` and no name pairs are always
candidates.

Regexes are case-insensitive unless they start with ``(?-i)``: a
case-insensitive pair is indexed by its lower-cased (ASCII) literals or prefix
and looked up by the lower-cased value; a value that is not ASCII (Unicode
case rules: ``\u212a`` is a ``k``) makes every session of that index a
candidate, and the regex decides. A ``(?-i)`` pair is indexed as written.

The common case gets a table instead (:class:`_ExactTable`): when every
session that can match has one exact-literal pair, all on the same name, with
the same case rule, and no ``jq_filter`` (``{"user": "^alice$"}`` for every
developer), a message carrying one value of that name is routed by one dict
lookup of the value, to destinations computed when the router was built. Any
other message (no such header, several values, a value ending in a newline, a
non-ASCII value for a case-insensitive table) takes the walk above.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from splitter.errors import FilterError
from splitter.filters import CompiledFilter, MessageView, Pair


@dataclass(frozen=True)
class SessionRoute:
    """One session on one queue/topic: its order, its filter, its temporary destination."""

    session_id: str
    sequence: int
    filter: CompiledFilter
    destination: str


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where one copy of a message goes; ``session_id`` is None for the fallback."""

    destination: str
    session_id: str | None


class _ExactTable:
    """Routes by one lookup: value of ``name`` -> its destinations (see the module docstring)."""

    __slots__ = ("folded", "name", "routes", "unmatched")

    def __init__(
        self,
        name: str,
        folded: bool,
        routes: dict[str, tuple[Delivery, ...]],
        fallback: Delivery,
    ) -> None:
        self.name = name
        #: Case-insensitive: the table is keyed by lower-cased ASCII values.
        self.folded = folded
        self.routes = routes
        #: The destinations of a value no session has.
        self.unmatched = (fallback,)

    def lookup(self, values: Sequence[str]) -> tuple[Delivery, ...] | None:
        """The destinations of a message whose ``name`` values are ``values``, if the
        table decides them alone; None: take the walk."""
        if len(values) != 1:
            return None
        value = values[0]
        if value[-1:] == "\n":
            return None  # ``$`` matches before it: two literals may apply
        if self.folded:
            if not value.isascii():
                return None  # Unicode case rules: the regexes decide
            value = value.lower()
        return self.routes.get(value, self.unmatched)


def _key_pair(pairs: Sequence[Pair]) -> Pair:
    """The pair to index a session by: exact literals rule out most, then a prefix."""
    for pair in pairs:
        if pair.literals is not None:
            return pair
    for pair in pairs:
        if pair.prefix is not None:
            return pair
    return pairs[0]


class Router:
    """Routes messages among ``routes`` (any order given; sorted by sequence)."""

    def __init__(self, routes: Iterable[SessionRoute], fallback: str) -> None:
        ordered = tuple(sorted(routes, key=lambda r: r.sequence))
        for earlier, later in itertools.pairwise(ordered):
            if earlier.sequence == later.sequence:
                raise FilterError(
                    f"sessions {earlier.session_id!r} and {later.session_id!r} share sequence "
                    f"{earlier.sequence}; every session needs its own place in the order"
                )
        self.sessions = ordered
        #: Every attribute/header name some filter reads (lower-cased): nothing else needs
        #: decoding to route a message.
        self.names = frozenset(pair.name for route in ordered for pair in route.filter.pairs)
        self.fallback = Delivery(fallback, None)
        self._always: list[int] = []
        self._by_name: dict[str, list[int]] = {}
        self._by_value: dict[str, dict[str, list[int]]] = {}
        #: name -> prefix length -> prefix -> sessions (few distinct lengths in practice)
        self._by_prefix: dict[str, dict[int, dict[str, list[int]]]] = {}
        #: The same two for case-insensitive pairs, keyed lower-cased.
        self._by_value_folded: dict[str, dict[str, list[int]]] = {}
        self._by_prefix_folded: dict[str, dict[int, dict[str, list[int]]]] = {}
        #: name -> every session of the folded indexes: the candidates of a non-ASCII value.
        self._folded_all: dict[str, list[int]] = {}
        self._targets = [Delivery(r.destination, r.session_id) for r in ordered]
        for i, route in enumerate(ordered):
            flt = route.filter
            if flt.empty:
                continue  # matches nothing: never a candidate
            if not flt.pairs:
                self._always.append(i)
                continue
            key = _key_pair(flt.pairs)
            if key.literals is None and key.prefix is None:
                self._by_name.setdefault(key.name, []).append(i)
                continue
            if key.folded:
                self._folded_all.setdefault(key.name, []).append(i)
            if key.literals is None and key.prefix is not None:
                prefix_index = self._by_prefix_folded if key.folded else self._by_prefix
                by_length = prefix_index.setdefault(key.name, {})
                by_length.setdefault(len(key.prefix), {}).setdefault(key.prefix, []).append(i)
            elif key.literals is not None:
                value_index = self._by_value_folded if key.folded else self._by_value
                by_value = value_index.setdefault(key.name, {})
                for literal in key.literals:
                    by_value.setdefault(literal, []).append(i)
        self._exact = self._exact_table()

    def _exact_table(self) -> _ExactTable | None:
        """The table of the common case, if every session that can match is in it."""
        keyed = [r for r in self.sessions if not r.filter.empty]
        if not keyed or any(
            len(r.filter.pairs) != 1 or r.filter.program is not None for r in keyed
        ):
            return None
        pairs = [r.filter.pairs[0] for r in keyed]
        name, folded = pairs[0].name, pairs[0].folded
        if any(p.literals is None or p.name != name or p.folded != folded for p in pairs):
            return None
        index = (self._by_value_folded if folded else self._by_value)[name]
        routes = {value: tuple(self._walk(found)) for value, found in index.items()}
        return _ExactTable(name, folded, routes, self.fallback)

    def _walk(self, matched: Sequence[int]) -> list[Delivery]:
        """The destinations given the sessions that match (indexes in session order)."""
        targets: list[Delivery] = []
        for i in matched:
            targets.append(self._targets[i])
            if self.sessions[i].filter.spec.mode == "steal":
                return targets
        targets.append(self.fallback)
        return targets

    def candidates(self, view: MessageView) -> list[int]:
        """Indexes (in session order) of the sessions that may match ``view``."""
        found = list(self._always)
        by_name, by_value, by_prefix = self._by_name, self._by_value, self._by_prefix
        for name, values in view.attributes.items():
            prefix_index = by_prefix.get(name)
            if prefix_index:
                for length, prefixes in prefix_index.items():
                    for value in values:
                        hit = prefixes.get(value[:length])
                        if hit:
                            found += hit
            hit = by_name.get(name)
            if hit:
                found += hit
            literal_index = by_value.get(name)
            if literal_index:
                for value in values:
                    hit = literal_index.get(value)
                    if hit:
                        found += hit
                    if value[-1:] == "\n":
                        hit = literal_index.get(value[:-1])
                        if hit:
                            found += hit
            if name in self._folded_all:
                found += self._folded_candidates(name, values)
        if len(found) > 1:
            found = sorted(set(found))
        return found

    def _folded_candidates(self, name: str, values: Sequence[str]) -> list[int]:
        """Candidates among the case-insensitive pairs keyed by ``name``."""
        found: list[int] = []
        prefix_index = self._by_prefix_folded.get(name)
        literal_index = self._by_value_folded.get(name)
        for value in values:
            if not value.isascii():
                return self._folded_all[name]  # the regexes decide
            value = value.lower()
            if prefix_index:
                for length, prefixes in prefix_index.items():
                    hit = prefixes.get(value[:length])
                    if hit:
                        found += hit
            if literal_index:
                hit = literal_index.get(value)
                if hit:
                    found += hit
                if value[-1:] == "\n":
                    hit = literal_index.get(value[:-1])
                    if hit:
                        found += hit
        return found

    def route(self, view: MessageView) -> list[Delivery]:
        """The destinations of one message: mirror copies, then the owner or the fallback."""
        exact = self._exact
        if exact is not None:
            values = view.attributes.get(exact.name)
            if values is None:
                return [self.fallback]
            found = exact.lookup(values)
            if found is not None:
                return list(found)  # a new list: callers may change what they get
        candidates = self.candidates(view)
        if not candidates:
            return [self.fallback]  # a new list: callers may change what they get
        sessions = self.sessions
        targets: list[Delivery] = []
        for i in candidates:
            flt = sessions[i].filter
            if flt.matches(view):
                targets.append(self._targets[i])
                if flt.spec.mode == "steal":
                    return targets
        targets.append(self.fallback)
        return targets
