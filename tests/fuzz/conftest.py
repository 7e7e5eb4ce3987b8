"""Fixtures and the session summary of the fuzz tests (the contract is in fuzz_contract.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_contract import OUTCOMES


@pytest.fixture
def fresh_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new empty directory per generated example (the fixture itself is per test)."""

    def make() -> Path:
        return tmp_path_factory.mktemp("fuzz")

    yield make  # type: ignore[misc]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if OUTCOMES:
        total = sum(OUTCOMES.values())
        terminalreporter.write_sep("-", f"dws fuzz: {total} generated CLI cases")
        for (label, what), count in sorted(OUTCOMES.items()):
            terminalreporter.write_line(f"{label:28s} {what:8s} {count:6d}")
