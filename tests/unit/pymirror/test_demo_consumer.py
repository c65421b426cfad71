"""The demo consumer's message ids: a body it did not write is recorded, never a crash."""

from __future__ import annotations

import pytest

from pymirror.demo.consumer import message_id

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"id": "m3", "author": "carol"}', "m3"),
        (b'{"id": "k7"}', "k7"),
        ("order by carol", "foreign:order by carol"),
        (b"\xff\xfe", "foreign:\ufffd\ufffd"),
        ('{"id": 3}', 'foreign:{"id": 3}'),
        ("[1, 2]", "foreign:[1, 2]"),
        (None, "foreign:None"),
    ],
)
def test_a_demo_body_gives_its_id_and_any_other_a_foreign_one(
    body: str | bytes | None, expected: str
) -> None:
    assert message_id(body) == expected
