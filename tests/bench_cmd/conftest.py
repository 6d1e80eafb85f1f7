from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import Setup
from tests.daemons import Daemons


@pytest.fixture
def daemons(setup: Setup) -> Iterator[Daemons]:
    """Daemons for this setup; every one on its socket is stopped before its containers go."""
    d = Daemons(setup)
    yield d
    d.cleanup()
