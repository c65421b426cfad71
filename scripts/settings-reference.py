#!/usr/bin/env python3
"""Print the settings reference of pymirror as a markdown table, generated from the code.

    scripts/settings-reference.py            # print the table
    scripts/settings-reference.py --write    # rewrite the generated part of docs/configuration.md
    scripts/settings-reference.py --check    # exit 1 if docs/configuration.md is stale

The table walks :class:`pymirror.settings.Settings` (pydantic-settings, env prefix
``PYMIRROR_``, ``__`` between a group and its field; groups are nested models) and lists
each leaf setting: its environment variable, type (with constraints), default and
description. A field with a ``validation_alias`` (mirrord's ``OPERATOR_*`` names) is read
from that name as it stands, without the prefix. The generated part of
docs/configuration.md sits between the ``<!-- settings:begin -->`` and
``<!-- settings:end -->`` comments; tests/unit/test_docs.py checks it is current.

Run it with the project's venv (``.venv/bin/python scripts/settings-reference.py``); run
with another interpreter, it re-executes itself with ``.venv/bin/python`` when that exists.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "configuration.md"
BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
HEADER = ("environment variable", "type", "default", "description")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

try:
    from pydantic import BaseModel
    from pydantic.fields import FieldInfo
    from pydantic_core import PydanticUndefined

    from pymirror.settings import Settings
except ModuleNotFoundError:  # not the project's interpreter: use the venv's, once
    venv_python = REPO / ".venv" / "bin" / "python"
    if venv_python.exists() and Path(sys.executable) != venv_python:
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    raise


def _escape(text: str) -> str:
    """``text`` safe inside one markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _group(annotation: Any) -> type[BaseModel] | None:
    """The nested model of a settings group, or None for a leaf setting."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def type_name(annotation: Any) -> str:
    """A reader's name for a field's type: ``int``, ``float or unset``, ``auto | json``."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        names = [type_name(a) for a in args if a is not type(None)]
        text = " or ".join(names)
        return f"{text} or unset" if type(None) in args else text
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


_BOUNDS = (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"), ("multiple_of", "multiple of"))


def constraints(field: FieldInfo) -> list[str]:
    """The field's numeric and length bounds as text, e.g. ``['> 0', '≤ 64']``."""
    found = []
    for item in field.metadata:
        for attribute, symbol in _BOUNDS:
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{symbol} {value}")
        for attribute, words in (("min_length", "length ≥"), ("max_length", "length ≤")):
            value = getattr(item, attribute, None)
            if value is not None:
                found.append(f"{words} {value}")
    return found


def default_text(field: FieldInfo) -> str:
    """The default as a reader types it; ``unset`` for None, ``required`` when there is none."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"


def _aliases(field: FieldInfo) -> list[str]:
    alias = field.validation_alias
    if alias is None:
        return []
    if isinstance(alias, str):
        return [alias]
    choices = getattr(alias, "choices", None)  # AliasChoices
    if choices is not None:
        return [c for c in choices if isinstance(c, str)]
    return []


def rows(
    model: type[BaseModel], prefix: str = "PYMIRROR_", delimiter: str = "__"
) -> Iterator[tuple[str, str, str, str]]:
    """One ``(env var, type, default, description)`` row per leaf setting of ``model``."""
    for name, field in model.model_fields.items():
        group = _group(field.annotation)
        if group is not None:
            yield from rows(group, f"{prefix}{name.upper()}{delimiter}", delimiter)
            continue
        aliases = _aliases(field)
        env = " or ".join(f"`{a.upper()}`" for a in aliases) or f"`{prefix}{name.upper()}`"
        kind = type_name(field.annotation)
        bounds = constraints(field)
        if bounds:
            kind = f"{kind}, {', '.join(bounds)}"
        yield env, _escape(kind), default_text(field), _escape(field.description or "")


def table() -> str:
    """The markdown table of every setting of :class:`pymirror.settings.Settings`."""
    config = Settings.model_config
    prefix = str(config.get("env_prefix") or "")
    delimiter = str(config.get("env_nested_delimiter") or "__")
    lines = [
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows(Settings, prefix, delimiter)]
    return "\n".join(lines) + "\n"


def generated_part(text: str) -> str:
    """What stands between the markers in ``text``; ``ValueError`` if they are missing."""
    start = text.find(BEGIN)
    end = text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{BEGIN} ... {END} markers not found (in this order)")
    return text[start + len(BEGIN) : end].strip("\n") + "\n"


def replace_generated_part(text: str, new: str) -> str:
    """``text`` with the part between the markers replaced by ``new``."""
    generated_part(text)  # checks the markers
    start = text.find(BEGIN) + len(BEGIN)
    end = text.find(END)
    return text[:start] + "\n" + new.rstrip("\n") + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"rewrite the table in {DOC}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 if {DOC} is stale")
    parser.add_argument("--doc", type=Path, default=DOC, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    current = table()
    if not (args.write or args.check):
        sys.stdout.write(current)
        return 0
    try:
        text = args.doc.read_text()
        stale = generated_part(text) != current
    except (OSError, ValueError) as e:
        print(f"settings-reference: {args.doc}: {e}", file=sys.stderr)
        return 1
    if args.check:
        if stale:
            print(
                f"settings-reference: {args.doc} is stale; run scripts/settings-reference.py "
                "--write",
                file=sys.stderr,
            )
        return 1 if stale else 0
    if stale:
        args.doc.write_text(replace_generated_part(text, current))
        print(f"settings-reference: rewrote the settings table in {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
