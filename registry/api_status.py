"""An API server's error response (HTTP status + ``Status`` body) as a registry error (pure).

The body of a failed request is usually a ``metav1.Status``::

    {"kind": "Status", "status": "Failure", "reason": "Invalid", "code": 422,
     "message": "...", "details": {"causes": [{"field": "spec.x", "message": "..."}]}}

The error's message keeps the server's message and, for 422, every cause's field,
so a caller can show it unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from registry.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    KubeApiError,
    NotFoundError,
    UnauthorizedError,
    UnavailableError,
)

_BY_STATUS: dict[int, type[KubeApiError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: InvalidError,
    429: UnavailableError,
}


def error_class(status: int | None, reason: str = "") -> type[KubeApiError]:
    """The registry error class of an HTTP status (and Status reason)."""
    if status == 409 and reason == "AlreadyExists":
        return AlreadyExistsError
    if status is not None and status in _BY_STATUS:
        return _BY_STATUS[status]
    if status is not None and 500 <= status <= 599:
        return UnavailableError
    return KubeApiError


def parse_status(body: str | bytes | None) -> dict[str, Any]:
    """The Status object in an error body, or {} when the body is not one."""
    if not body:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def error_from_status(
    status: int | None, body: str | bytes | None, *, what: str, http_reason: str = ""
) -> KubeApiError:
    """The error for a failed request on ``what`` (e.g. ``"get mirrordx ns/name"``)."""
    doc = parse_status(body)
    reason = str(doc.get("reason") or "")
    message = str(doc.get("message") or "").strip()
    if not message:
        text = body.decode(errors="replace") if isinstance(body, bytes) else (body or "")
        message = text.strip()[:500] or http_reason or "no details"
    causes: list[tuple[str, str]] = []
    details = doc.get("details")
    if isinstance(details, dict):
        for cause in details.get("causes") or []:
            if isinstance(cause, dict):
                causes.append((str(cause.get("field") or ""), str(cause.get("message") or "")))
    code = status if status is not None else doc.get("code")
    code = code if isinstance(code, int) else None
    text = f"{what}: {code or 'no response'} {reason or http_reason}".rstrip() + f": {message}"
    missing = [f"{f}: {m}" for f, m in causes if f and f not in message]
    if missing:
        text += "; " + "; ".join(missing)
    return error_class(code, reason)(text, status=code, reason=reason, causes=tuple(causes))
