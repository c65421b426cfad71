"""Session filters: what one session asks for, compiled once, matched per message.

The matching rules (docs/how-it-works.md, "Routing rules"), all here and nowhere else:

- A filter matches when it is not empty (it has ``name -> regex`` pairs or a
  ``jq_filter``) and **every** pair matches: the message carries an attribute
  or header of that name (compared case-insensitively) and the regex
  *searches* successfully in its value (``regex.search``, not ``fullmatch``).
- SQS ``String`` and ``Number`` values are matched as text; ``Binary``
  attributes and Kafka header values that are not UTF-8 never match. A Kafka
  header repeated under one name matches when any of its values does.
- With a ``jq_filter`` the body is parsed as JSON and the program run on it; a
  truthy first result (anything but ``false``/``null``/no result) is a match,
  and the rest of the program's output is never computed. A body that is not
  JSON (or nested too deep to parse) or a program that fails means no match.
  With both kinds of filter, both must match.
- Regexes use the ``regex`` module (lookaround, backreferences, possessive
  quantifiers) and are compiled case-insensitively, as mirrord's operator
  does (``^a$`` matches ``A``); a leading ``(?-i)`` makes a pattern
  case-sensitive. Each search has a time budget; a search that runs over it
  counts as no match and is logged once per filter.
- A jq program runs in a helper process with an empty environment and a
  CPU-time budget (:mod:`splitter.jq_programs`); running over it counts as no
  match and is logged once per filter.

Everything a message offers is captured once in a :class:`MessageView`, so a
message matched against many sessions decodes its attributes and parses its
body at most once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jq
import regex
import structlog

from splitter.errors import FilterError
from splitter.jq_programs import DEFAULT_JQ_BUDGET, JqHelperError, check_program, shared_evaluator

log = structlog.get_logger()

Mode = Literal["steal", "mirror"]
MODES: tuple[Mode, ...] = ("steal", "mirror")

#: Seconds one regex search may take before it counts as no match.
DEFAULT_MATCH_BUDGET = 0.05

_NOT_JSON = object()
_UNPARSED = object()

# ``^literal$`` or ``^(?:a|b|c)$`` / ``^(a|b|c)$`` with no metacharacters in the literals:
# such a pair is decided by a set lookup instead of a regex search.
_META = set(".^$*+?{}[]()|\\")
_EXACT = re.compile(r"\^(?:\((?:\?:)?(?P<alts>[^()]*)\)|(?P<one>[^()|]*))\$")


@dataclass(frozen=True)
class FilterSpec:
    """One session's filter on one queue, as the user wrote it."""

    message_filter: Mapping[str, str] = field(default_factory=dict)
    jq_filter: str | None = None
    mode: Mode = "steal"


class MessageView:
    """The parts of one message a filter looks at, decoded once.

    ``attributes`` maps the lower-cased attribute/header name to its text
    values; values that cannot be matched (Binary, non-UTF-8) are left out.
    """

    __slots__ = ("_json", "attributes", "body")

    def __init__(self, attributes: Mapping[str, tuple[str, ...]], body: str | bytes | None) -> None:
        self.attributes = attributes
        self.body = body
        self._json: Any = _UNPARSED

    @classmethod
    def from_sqs(
        cls, message_attributes: Mapping[str, Any] | None, body: str | None
    ) -> MessageView:
        """From an SQS message's ``MessageAttributes`` (as botocore returns them) and body."""
        attributes: dict[str, tuple[str, ...]] = {}
        for name, value in (message_attributes or {}).items():
            text = value.get("StringValue")
            # Binary (and String/Number lists, which SQS does not implement) never match.
            if text is not None and not value.get("DataType", "String").startswith("Binary"):
                # SQS names are case-sensitive: "Author" and "author" may both be present.
                key = name.lower()
                attributes[key] = (*attributes.get(key, ()), text)
        return cls(attributes, body)

    @classmethod
    def from_kafka(
        cls,
        headers: Iterable[tuple[str, bytes | None]] | None,
        value: bytes | None,
        wanted: frozenset[str] | None = None,
    ) -> MessageView:
        """From a Kafka record's headers and value; with ``wanted`` (lower-cased names, e.g.
        :attr:`Router.names <splitter.routing.Router.names>`) only those headers are decoded.
        Many records: :class:`KafkaHeaders` (this is one of them, for one record)."""
        return KafkaHeaders(wanted).view(headers or (), value)

    def json_body(self) -> Any:
        """The body parsed as JSON, or ``_NOT_JSON``; parsed at most once."""
        if self._json is _UNPARSED:
            try:
                self._json = json.loads(self.body) if self.body is not None else _NOT_JSON
            except (ValueError, TypeError, RecursionError):
                # RecursionError: nested deeper than the parser can go - not JSON to us.
                self._json = _NOT_JSON
        return self._json


#: Raw header names a :class:`KafkaHeaders` remembers: a producer writing a new name per
#: record must not grow it without bound (names past it are lower-cased each time).
NAMES_REMEMBERED = 1024

#: What :class:`KafkaHeaders` finds for a name it has not seen (a header whose name
#: lower-cases to it is merely lower-cased again each time).
_UNSEEN = "\x00unseen"


class KafkaHeaders:
    """Makes the :class:`MessageView` of each Kafka record, decoding only ``wanted`` headers.

    One per router (``wanted`` = :attr:`Router.names <splitter.routing.Router.names>`;
    None: every header): each raw header name is lower-cased and looked up in
    ``wanted`` once, then remembered, so a header no filter reads costs one dict
    lookup per record and is never decoded.
    """

    __slots__ = ("_keys", "wanted")

    def __init__(self, wanted: frozenset[str] | None = None) -> None:
        self.wanted = wanted
        #: Raw name -> its lower-cased name, or None if no filter reads it.
        self._keys: dict[str, str | None] = {}

    def _key(self, name: str) -> str | None:
        key: str | None = name.lower()
        if self.wanted is not None and key not in self.wanted:
            key = None
        if len(self._keys) < NAMES_REMEMBERED:
            self._keys[name] = key
        return key

    def view(self, headers: Iterable[tuple[str, bytes | None]], value: bytes | None) -> MessageView:
        """The view of one record: its wanted headers' UTF-8 values, and its value."""
        keys = self._keys
        attributes: dict[str, tuple[str, ...]] = {}
        for name, raw in headers:
            key = keys.get(name, _UNSEEN)
            if key is _UNSEEN:
                key = self._key(name)
            if key is None or raw is None:
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            seen = attributes.get(key)
            attributes[key] = (text,) if seen is None else (*seen, text)
        return MessageView(attributes, value)


def literal_prefix(pattern: str) -> str | None:
    """The prefix a pattern requires if it is ``^lit`` (no metacharacters), else None."""
    if len(pattern) < 2 or pattern[0] != "^" or _META & set(pattern[1:]):
        return None
    return pattern[1:]


def exact_literals(pattern: str) -> frozenset[str] | None:
    """The values a pattern matches if it is ``^lit$`` or ``^(a|b)$``, else None."""
    m = _EXACT.fullmatch(pattern)
    if m is None:
        return None
    alts = m["alts"].split("|") if m["alts"] is not None else [m["one"]]
    if any(_META & set(a) for a in alts):
        return None
    return frozenset(alts)


#: A leading inline flag that turns case-insensitivity off for the whole pattern.
CASE_SENSITIVE = "(?-i)"


@dataclass(frozen=True)
class Pair:
    """One ``name -> regex`` pair, compiled; ``literals`` is set for exact patterns
    (``^a$``, ``^(a|b)$``), ``prefix`` for prefix patterns (``^my-session-``).

    ``folded``: the pattern is case-insensitive and ``literals``/``prefix`` are
    lower-cased ASCII; they then decide only ASCII values (compared lower-cased),
    any other value is searched with the regex (Unicode case rules: ``\u212a`` is a
    ``k``)."""

    name: str
    pattern: regex.Pattern[str]
    literals: frozenset[str] | None
    prefix: str | None = None
    folded: bool = False

    def matches(self, values: Sequence[str], budget: float) -> bool:
        # Plain loops, not ``any(<generator>)`` (SIM110): this runs for every candidate of
        # every message, and the generator doubles the cost of a routed message.
        if self.folded:
            return self._matches_folded(values, budget)
        literals = self.literals
        if literals is not None:
            for v in values:  # noqa: SIM110 - see above
                # ``$`` also matches before a final newline, as in the regex.
                if v in literals or (v[-1:] == "\n" and v[:-1] in literals):
                    return True
            return False
        prefix = self.prefix
        if prefix is not None:
            for v in values:  # noqa: SIM110 - see above
                if v.startswith(prefix):
                    return True
            return False
        search = self.pattern.search
        for v in values:  # noqa: SIM110 - see above
            if search(v, timeout=budget) is not None:
                return True
        return False

    def _matches_folded(self, values: Sequence[str], budget: float) -> bool:
        literals, prefix, search = self.literals, self.prefix, self.pattern.search
        for v in values:
            if not v.isascii():
                if search(v, timeout=budget) is not None:
                    return True
                continue
            v = v.lower()
            if literals is not None:
                if v in literals or (v[-1:] == "\n" and v[:-1] in literals):
                    return True
            elif prefix is not None and v.startswith(prefix):
                return True
        return False


class CompiledFilter:
    """A :class:`FilterSpec` ready to match; build it with :func:`compile_filter`."""

    def __init__(
        self,
        spec: FilterSpec,
        pairs: tuple[Pair, ...],
        program: Any,
        budget: float,
        where: str,
        jq_budget: float = DEFAULT_JQ_BUDGET,
    ) -> None:
        self.spec = spec
        self.pairs = pairs
        #: The jq program's text (run in the helper process), or None.
        self.program = program
        self.budget = budget
        self.jq_budget = jq_budget
        self.where = where
        self._warned = False
        self._jq_warned = False

    @property
    def mode(self) -> Mode:
        return self.spec.mode

    @property
    def names(self) -> frozenset[str]:
        """Lower-cased attribute names a message must carry to match."""
        return frozenset(p.name for p in self.pairs)

    @property
    def empty(self) -> bool:
        return not self.pairs and self.program is None

    def matches(self, view: MessageView) -> bool:
        if not self.pairs and self.program is None:
            return False
        attributes = view.attributes
        try:
            for pair in self.pairs:
                values = attributes.get(pair.name)
                if values is None or not pair.matches(values, self.budget):
                    return False
        except TimeoutError:
            self._warn("a regex ran over its time budget; counted as no match")
            return False
        return self.program is None or self._jq_matches(view)

    def _jq_matches(self, view: MessageView) -> bool:
        # Parsed here (once per message) so a body that is not JSON never reaches the helper.
        if view.json_body() is _NOT_JSON or view.body is None:
            return False
        try:
            # Only the first result decides: the helper never runs the rest of the stream.
            return bool(shared_evaluator().evaluate(self.program, view.body, self.jq_budget))
        except TimeoutError:
            self._jq_warn("a jq program ran over its time budget; counted as no match")
        except JqHelperError as e:
            self._jq_warn(f"a jq program could not run ({e}); counted as no match")
        return False

    def _warn(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning(what, filter=self.where, budget_s=self.budget)

    def _jq_warn(self, what: str) -> None:
        if not self._jq_warned:
            self._jq_warned = True
            log.warning(what, filter=self.where, budget_s=self.jq_budget)


def _shortcuts(
    source: str, pattern: regex.Pattern[str]
) -> tuple[frozenset[str] | None, str | None, bool]:
    """``(literals, prefix, folded)`` for :class:`Pair`: set lookups that decide like the
    regex. A case-insensitive pattern gets lower-cased ASCII ones only."""
    if pattern.flags & regex.IGNORECASE:
        literals, prefix = exact_literals(source), literal_prefix(source)
        if literals is not None and not all(a.isascii() for a in literals):
            literals = None
        if prefix is not None and not prefix.isascii():
            prefix = None
        if literals is None and prefix is None:
            return None, None, False
        return (
            frozenset(a.lower() for a in literals) if literals is not None else None,
            prefix.lower() if prefix is not None else None,
            True,
        )
    if source.startswith(CASE_SENSITIVE):
        rest = source[len(CASE_SENSITIVE) :]
        return exact_literals(rest), literal_prefix(rest), False
    return None, None, False


def compile_filter(
    spec: FilterSpec,
    *,
    where: str = "message_filter",
    budget: float = DEFAULT_MATCH_BUDGET,
    jq_budget: float = DEFAULT_JQ_BUDGET,
) -> CompiledFilter:
    """Compile every regex and the jq program, or raise ``FilterError`` naming the bad one."""
    if spec.mode not in MODES:
        raise FilterError(
            f"{where}: queue_mode {spec.mode!r} is not one of {', '.join(MODES)}; "
            "use 'steal' (the default) or 'mirror'"
        )
    if not isinstance(spec.message_filter, Mapping):
        raise FilterError(
            f"{where}: must be a map of attribute name -> regex, "
            f"got {type(spec.message_filter).__name__}"
        )
    if spec.jq_filter is not None and not isinstance(spec.jq_filter, str):
        raise FilterError(
            f"{where}: jq_filter must be a jq program (a string), "
            f"got {type(spec.jq_filter).__name__}"
        )
    pairs = []
    seen: set[str] = set()
    for name, source in spec.message_filter.items():
        if not isinstance(name, str) or not name:
            raise FilterError(f"{where}: attribute names must be non-empty strings, got {name!r}")
        if not isinstance(source, str):
            raise FilterError(
                f"{where}.{name}: the filter must be a regex string, got {type(source).__name__}"
            )
        key = name.lower()
        if key in seen:
            raise FilterError(
                f"{where}.{name}: the attribute is named twice (names are case-insensitive); "
                "merge the two regexes into one"
            )
        seen.add(key)
        try:
            pattern = regex.compile(source, regex.IGNORECASE)
        except regex.error as e:
            raise FilterError(
                f"{where}.{name}: {source!r} is not a valid regex ({e}); fix the pattern"
            ) from e
        literals, prefix, folded = _shortcuts(source, pattern)
        pairs.append(Pair(key, pattern, literals, prefix, folded))
    program = None
    if spec.jq_filter is not None:
        refused = check_program(spec.jq_filter)
        if refused is not None:
            raise FilterError(f"{where}: jq_filter {spec.jq_filter!r}: {refused}; remove it")
        try:
            # Compiled here only to report a syntax error now; it runs in the helper process.
            jq.compile(spec.jq_filter)
        except ValueError as e:
            first = str(e).strip().splitlines()[0]
            raise FilterError(
                f"{where}: jq_filter {spec.jq_filter!r} does not compile ({first}); fix the program"
            ) from e
        program = spec.jq_filter
    return CompiledFilter(spec, tuple(pairs), program, budget, where, jq_budget)
