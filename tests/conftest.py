"""Fixtures shared by every test folder: the store backends (`tests/backends.py`)."""
from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest
from tests.backends import BACKENDS, fresh_store_url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: pathlib.Path) -> Iterator[str]:
    """The URL of an empty store on each backend."""
    with fresh_store_url(backend, tmp_path) as url:
        yield url
