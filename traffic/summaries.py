"""One way to turn a stats dataclass into a flat dict (JSON summaries, structured logs).

A stats dataclass subclasses ``Summary``; ``as_dict`` walks its fields in order:
a nested ``Summary`` is flattened into the same dict (its keys must not clash),
a mapping (``Counter``) becomes a plain dict, a float is rounded to milliseconds
(3 digits), and a field whose metadata is ``OMIT`` (an exception, say) is left out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

OMIT: Mapping[str, Any] = {"summary": False}
"""``field(metadata=OMIT)``: not part of the summary."""


class Summary:
    """Base of the stats dataclasses of ``traffic``."""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if not f.metadata.get("summary", True):
                continue
            value = getattr(self, f.name)
            if isinstance(value, Summary):
                nested = value.as_dict()
                clash = out.keys() & nested.keys()
                if clash:
                    raise ValueError(f"{type(self).__name__}.{f.name} repeats {sorted(clash)}")
                out.update(nested)
            elif isinstance(value, Mapping):
                out[f.name] = dict(value)
            elif isinstance(value, float):
                out[f.name] = round(value, 3)
            else:
                out[f.name] = value
        return out
