"""The tags of a temporary SQS queue: the original's, the registry's and pymirror's own.

Pure: data in, data out. The bookkeeping tags (``pymirror.dev/...``) say who
made a queue, for which original and for whom; they decide what garbage
collection may delete, whatever a queue's name. SQS's limits (50 tags, keys <=
128, values <= 256 characters) are checked here, before anything is created.
"""

from __future__ import annotations

from collections.abc import Mapping

from splitter.errors import SqsError

MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256

TAG_PREFIX = "pymirror.dev/"
TAG_CREATED_BY = TAG_PREFIX + "created-by"
TAG_ORIGINAL = TAG_PREFIX + "original-queue"
TAG_SESSION = TAG_PREFIX + "session"
TAG_FALLBACK = TAG_PREFIX + "fallback"
#: A session queue's ``queue_mode`` (``steal`` / ``mirror``), so an end resumed after a
#: restart knows whether the leftovers are copies (dropped) or owned (routed again).
TAG_MODE = TAG_PREFIX + "mode"
#: Set on a session queue once a split worker routes to it: a queue with it that no
#: session routes to any more is an end a restart must finish; one without it was made
#: for a session not listed yet, and is left alone.
TAG_ROUTED = TAG_PREFIX + "routed"
CREATED_BY = "pymirror"


def bookkeeping_tags(
    original_name: str, *, fallback: bool, session: str | None, mode: str | None = None
) -> dict[str, str]:
    """pymirror's own tags: who made the queue, for which original, for whom (and, for a
    session, its ``mode`` when given)."""
    if fallback == (session is not None):
        raise ValueError("a temporary queue is either the fallback or a session's, not both")
    tags = {TAG_CREATED_BY: CREATED_BY, TAG_ORIGINAL: original_name}
    if fallback:
        tags[TAG_FALLBACK] = "true"
    else:
        tags[TAG_SESSION] = str(session)
        if mode is not None:
            tags[TAG_MODE] = mode
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
