"""Every vendor exception maps into the registry error tree at the seam (registry.kube)."""

from __future__ import annotations

import inspect
import json

import pytest
import urllib3
from kubernetes.client import exceptions as vendor
from kubernetes.config.config_exception import ConfigException

from registry.api_status import error_from_status
from registry.errors import (
    AlreadyExistsError,
    BadRequestError,
    ConflictError,
    ForbiddenError,
    GoneError,
    InvalidError,
    KubeApiError,
    KubeConfigError,
    NotFoundError,
    RegistryError,
    UnauthorizedError,
    UnavailableError,
)
from registry.kube import translate

pytestmark = pytest.mark.unit


def status_body(code: int, reason: str, message: str, causes: list[dict[str, str]] = []) -> str:  # noqa: B006
    doc = {"kind": "Status", "code": code, "reason": reason, "message": message}
    if causes:
        doc["details"] = {"causes": causes}
    return json.dumps(doc)


def api(cls: type[vendor.ApiException], code: int, reason: str = "") -> vendor.ApiException:
    return cls(status=code, reason=reason or "r", body=status_body(code, reason, "msg"))


#: One example of every exception class kubernetes.client.exceptions defines, and where it maps.
VENDOR: dict[str, tuple[BaseException, type[RegistryError]]] = {
    "OpenApiException": (vendor.OpenApiException("x"), KubeApiError),
    "ApiTypeError": (vendor.ApiTypeError("bad type"), BadRequestError),
    "ApiValueError": (vendor.ApiValueError("bad value"), BadRequestError),
    "ApiAttributeError": (vendor.ApiAttributeError("bad attr"), BadRequestError),
    "ApiKeyError": (vendor.ApiKeyError("bad key"), BadRequestError),
    "ApiException": (api(vendor.ApiException, 503), UnavailableError),
    "BadRequestException": (api(vendor.BadRequestException, 400), BadRequestError),
    "UnauthorizedException": (api(vendor.UnauthorizedException, 401), UnauthorizedError),
    "ForbiddenException": (api(vendor.ForbiddenException, 403), ForbiddenError),
    "NotFoundException": (api(vendor.NotFoundException, 404), NotFoundError),
    "ConflictException": (api(vendor.ConflictException, 409, "Conflict"), ConflictError),
    "UnprocessableEntityException": (
        api(vendor.UnprocessableEntityException, 422, "Invalid"),
        InvalidError,
    ),
    "ServiceException": (api(vendor.ServiceException, 500), UnavailableError),
}


def test_the_table_lists_every_vendor_exception_class() -> None:
    defined = {
        name
        for name, obj in inspect.getmembers(vendor, inspect.isclass)
        if issubclass(obj, BaseException) and obj.__module__ == vendor.__name__
    }
    assert defined == set(VENDOR)  # a new vendor class needs a row here (and a mapping)
    for name, (example, _) in VENDOR.items():
        assert type(example).__name__ == name


@pytest.mark.parametrize("name", sorted(VENDOR))
def test_each_vendor_exception_maps_into_the_registry_tree(name: str) -> None:
    example, expected = VENDOR[name]
    error = translate(example, "get thing ns/x")
    assert type(error) is expected
    assert str(error).startswith("get thing ns/x: ")


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (api(vendor.ConflictException, 409, "AlreadyExists"), AlreadyExistsError),
        (api(vendor.ApiException, 410, "Expired"), GoneError),
        (api(vendor.ApiException, 429, "TooManyRequests"), UnavailableError),
        (api(vendor.ApiException, 504, "Timeout"), UnavailableError),
        (api(vendor.ApiException, 405, "MethodNotAllowed"), KubeApiError),
        (
            vendor.ApiException(status=0, reason="SSLError\ncertificate verify failed"),
            UnavailableError,
        ),
        (vendor.ApiException(status=0, reason="Cannot prepare a request"), BadRequestError),
        (ConfigException("Invalid kube-config file"), KubeConfigError),
        (urllib3.exceptions.MaxRetryError(None, "/", "refused"), UnavailableError),
        (urllib3.exceptions.ProtocolError("Connection broken"), UnavailableError),
        (urllib3.exceptions.ReadTimeoutError(None, "/", "read timed out"), UnavailableError),
        (ConnectionRefusedError(111, "Connection refused"), UnavailableError),
        (RuntimeError("unexpected"), KubeApiError),
    ],
)
def test_statuses_and_transport_failures_map_by_meaning(
    error: BaseException, expected: type[RegistryError]
) -> None:
    assert type(translate(error, "watch x")) is expected


def test_only_unavailable_is_retriable() -> None:
    assert UnavailableError.retriable
    retriable = [cls for _, cls in VENDOR.values() if cls.retriable]
    assert set(retriable) == {UnavailableError}


def test_a_registry_error_passes_through_unchanged() -> None:
    error = NotFoundError("gone")
    assert translate(error, "get") is error


def test_a_422_message_keeps_every_field_cause() -> None:
    body = status_body(
        422,
        "Invalid",
        'X "bad" is invalid: spec.a: Required value',
        [
            {"field": "spec.a", "message": "Required value"},
            {"field": "spec.b", "message": "Unsupported value: 'Job'"},
        ],
    )
    error = error_from_status(422, body, what="create x ns/bad")
    assert isinstance(error, InvalidError)
    assert (error.status, error.reason) == (422, "Invalid")
    assert error.causes == (("spec.a", "Required value"), ("spec.b", "Unsupported value: 'Job'"))
    assert str(error).startswith("create x ns/bad: 422 Invalid: ")
    assert "spec.a: Required value" in str(error)
    assert "spec.b: Unsupported value: 'Job'" in str(error)  # not in the server's message


def test_a_body_that_is_no_status_is_quoted() -> None:
    error = error_from_status(502, b"<html>bad gateway</html>", what="get x", http_reason="Bad")
    assert isinstance(error, UnavailableError)
    assert str(error) == "get x: 502 Bad: <html>bad gateway</html>"
