"""Names of temporary queues and topics (docs/how-it-works.md, "Temporary queues and topics").

A format holds three variables, all required:

- ``{{RANDOM}}``: 10 random digits, never truncated;
- ``{{FALLBACK}}``: ``-fallback-`` for the workload's fallback, ``-`` for a session's;
- ``{{ORIGINAL_QUEUE}}`` (SQS) / ``{{ORIGINAL_TOPIC}}`` (Kafka): the original's name.

Rendered names are made legal for the broker: characters outside its charset
become ``-``, and when the name is too long the original's part is cut from
its end (never the random part). SQS FIFO queues keep their ``.fifo`` suffix.
A format is checked when it is built (:class:`NameFormat`: variables,
charset, room left for the original), and whether a given original fits with
:meth:`NameFormat.check` - both before anything is created.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Literal

from splitter.errors import NameFormatError

Broker = Literal["sqs", "kafka"]

DEFAULT_SQS_QUEUE_FORMAT = "mirrord-tmp-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_QUEUE}}"
DEFAULT_KAFKA_TOPIC_FORMAT = "mirrord-tmp-{{RANDOM}}{{FALLBACK}}{{ORIGINAL_TOPIC}}"

RANDOM_DIGITS = 10
FIFO_SUFFIX = ".fifo"


@dataclass(frozen=True)
class _Rules:
    original_variable: str
    max_length: int
    illegal: re.Pattern[str]
    charset: str


_RULES: dict[Broker, _Rules] = {
    "sqs": _Rules("ORIGINAL_QUEUE", 80, re.compile(r"[^A-Za-z0-9_-]"), "A-Z a-z 0-9 _ -"),
    "kafka": _Rules("ORIGINAL_TOPIC", 249, re.compile(r"[^A-Za-z0-9._-]"), "A-Z a-z 0-9 . _ -"),
}
_VARIABLE = re.compile(r"\{\{([^{}]*)\}\}")
_DIGITS = re.compile(rf"[0-9]{{{RANDOM_DIGITS}}}")
_MIN_ORIGINAL = 1


class NameFormat:
    """A validated name format for one broker kind."""

    def __init__(self, template: str, broker: Broker) -> None:
        rules = _RULES.get(broker)
        if rules is None:
            raise NameFormatError(
                f"name format {template!r} is for broker {broker!r}; use one of {', '.join(_RULES)}"
            )
        self.template = template
        self.broker = broker
        self._rules = rules
        required = {"RANDOM", "FALLBACK", rules.original_variable}
        found = _VARIABLE.findall(template)
        unknown = sorted(set(found) - required)
        if unknown:
            raise NameFormatError(
                f"name format {template!r} has unknown variable(s) "
                f"{', '.join('{{' + u + '}}' for u in unknown)}; only "
                f"{{{{RANDOM}}}}, {{{{FALLBACK}}}} and {{{{{rules.original_variable}}}}} exist"
            )
        missing = [v for v in ("RANDOM", "FALLBACK", rules.original_variable) if v not in found]
        if missing:
            raise NameFormatError(
                f"name format {template!r} lacks {', '.join('{{' + m + '}}' for m in missing)}; "
                "all of {{RANDOM}}, {{FALLBACK}} and "
                f"{{{{{rules.original_variable}}}}} are required"
            )
        repeated = sorted(v for v in required if found.count(v) > 1)
        if repeated:
            raise NameFormatError(
                f"name format {template!r} uses {', '.join(repeated)} more than once; "
                "use each variable once"
            )
        literal = _VARIABLE.sub("", template)
        bad = sorted(set(rules.illegal.findall(literal)))
        if bad:
            raise NameFormatError(
                f"name format {template!r} has characters a {broker} name cannot hold "
                f"({''.join(bad)!r}); use only {rules.charset}"
            )
        fixed = self._fixed_length(fallback=True, fifo=False)
        if rules.max_length - fixed < _MIN_ORIGINAL:
            raise NameFormatError(
                f"name format {template!r} cannot fit {rules.max_length} characters: its fixed "
                f"text, the {RANDOM_DIGITS} random digits and '-fallback-' take {fixed}, leaving "
                "no room for the original's name; shorten the format's fixed text"
            )

    def _fixed_length(self, *, fallback: bool, fifo: bool) -> int:
        rendered = self._fill("0" * RANDOM_DIGITS, fallback=fallback, original="")
        return len(rendered) + (len(FIFO_SUFFIX) if fifo else 0)

    def _fill(self, digits: str, *, fallback: bool, original: str) -> str:
        values = {
            "RANDOM": digits,
            "FALLBACK": "-fallback-" if fallback else "-",
            self._rules.original_variable: original,
        }
        return _VARIABLE.sub(lambda m: values[m.group(1)], self.template)

    def check(self, original: str) -> None:
        """Raise ``NameFormatError`` if names for ``original`` cannot be rendered legally."""
        fifo = self.broker == "sqs" and original.endswith(FIFO_SUFFIX)
        room = self._rules.max_length - self._fixed_length(fallback=True, fifo=fifo)
        if room < _MIN_ORIGINAL:
            raise NameFormatError(
                f"a temporary name for {original!r} cannot fit {self._rules.max_length} "
                f"characters with format {self.template!r}: the format alone takes "
                f"{self._rules.max_length - room}; shorten the format's fixed text"
            )
        if not original or not original.removesuffix(FIFO_SUFFIX if fifo else ""):
            raise NameFormatError("the original queue/topic name is empty; name a real one")

    def render(self, original: str, *, fallback: bool, random_digits: str | None = None) -> str:
        """The temporary name for ``original`` (``check`` first; this raises the same way)."""
        self.check(original)
        digits = random_digits
        if digits is None:
            digits = "".join(secrets.choice("0123456789") for _ in range(RANDOM_DIGITS))
        # ``str.isdigit`` takes fullwidth and superscript digits; a name needs ASCII ones.
        if _DIGITS.fullmatch(digits) is None:
            raise NameFormatError(f"random part {digits!r} must be {RANDOM_DIGITS} digits")
        fifo = self.broker == "sqs" and original.endswith(FIFO_SUFFIX)
        base = original.removesuffix(FIFO_SUFFIX) if fifo else original
        base = self._rules.illegal.sub("-", base)
        room = self._rules.max_length - self._fixed_length(fallback=fallback, fifo=fifo)
        name = self._fill(digits, fallback=fallback, original=base[:room])
        return name + FIFO_SUFFIX if fifo else name

    def __repr__(self) -> str:
        return f"NameFormat({self.template!r}, {self.broker!r})"


def checked_format(template: str, broker: Broker) -> NameFormat:
    """``template`` as a :class:`NameFormat`, for settings validators: a bad format is a
    ``ValueError`` (pydantic turns it into the setting's error, the CLI into ``ConfigError``)."""
    try:
        return NameFormat(template, broker)
    except NameFormatError as e:
        raise ValueError(str(e)) from e
