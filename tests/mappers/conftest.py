"""Fixtures of the mapper tests: an `engine` that writes engine-like transactions to a fresh
voucher database and maps what logical replication streams back."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mappers.harness import Engine, engine_for


@pytest.fixture
def engine(voucher_db, tmp_path) -> Iterator[Engine]:
    with engine_for(voucher_db, tmp_path / "state") as made:
        yield made
