"""pytest plugin (registered through the ``pytest11`` entry point): the ``soket_mock`` fixture."""

from __future__ import annotations

from typing import Iterator

import pytest

from .testing import MockServer


@pytest.fixture
def soket_mock() -> Iterator[MockServer]:
    """A fresh :class:`soket_transcribe.testing.MockServer` with default settings for each test:
    1000 files, token ``"test-token"``; use ``soket_mock.url``, ``.token`` and ``.batch_id``."""
    with MockServer() as server:
        yield server
