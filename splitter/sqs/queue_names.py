"""Names of SQS queues: a name in a URL, and whether a name fits a temporary-name format.

Pure: data in, data out. Rendering names from a format is
:class:`splitter.naming.NameFormat`'s; this module reads them back, for
garbage collection of the queues pymirror made for an original.
"""

from __future__ import annotations

import re

from splitter.naming import FIFO_SUFFIX, RANDOM_DIGITS, NameFormat

#: A queue name's characters (a regex character class body); ".fifo" counts as part of
#: the name it ends.
NAME_CHARS = r"A-Za-z0-9_\-"


def queue_name(name_or_url: str) -> str:
    """The queue name in a name or URL (the URL's last path segment)."""
    return name_or_url.rstrip("/").rsplit("/", 1)[-1]


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
        f"[^{NAME_CHARS}]", "-", original.removesuffix(FIFO_SUFFIX) if fifo else original
    )
    pieces = re.split(r"(\{\{[A-Z_]+\}\})", name_format.template)
    # Every other piece has a fixed length, so with {{FALLBACK}} fixed the split is unique.
    for fallback in ("-fallback-", "-"):
        regex = "".join(
            rf"\d{{{RANDOM_DIGITS}}}"
            if piece == "{{RANDOM}}"
            else re.escape(fallback)
            if piece == "{{FALLBACK}}"
            else f"(?P<original>[{NAME_CHARS}]+)"
            if piece in ("{{ORIGINAL_QUEUE}}", "{{ORIGINAL_TOPIC}}")
            else re.escape(piece)
            for piece in pieces
        )
        m = re.fullmatch(regex, base)
        if m and wanted.startswith(m.group("original")):
            return True
    return False


def listing_prefix(name_format: NameFormat) -> str:
    """The literal text before the format's first variable: ``ListQueues``' prefix."""
    return name_format.template.split("{{", 1)[0]
