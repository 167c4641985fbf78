"""The `company` filter strips stacked legal suffixes but never the whole name."""
from __future__ import annotations

import pytest

from runner.language.jinja import company


@pytest.mark.parametrize(("raw", "expected"), [
    ("Kestrel Software Pvt. Ltd.", "Kestrel Software"),
    ("Bauer GmbH & Co. KG", "Bauer"),
    ("Foo, Inc.", "Foo"),
    ("Acme GmbH", "Acme"),
    ("Sony K.K.", "Sony"),
    ("Iberia Datos S.L.", "Iberia Datos"),
    ("Co.", "Co."),
    ("Inc", "Inc"),
    ("Northwind Analytics", "Northwind Analytics"),
    ("", ""),
])
def test_company(raw: str, expected: str) -> None:
    assert company(raw) == expected
