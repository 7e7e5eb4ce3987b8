"""Settings and the contract shared by the fuzz tests (tests/fuzz/test_fuzz_*.py).

Budget: every fuzz test runs ``DWS_FUZZ_EXAMPLES`` generated cases (default 60: a couple of
minutes for the whole suite on two cores), derandomised (a fixed seed) so that CI is
reproducible. A nightly run sets, e.g., ``DWS_FUZZ_EXAMPLES=5000`` and ``DWS_FUZZ_SEED=random``
to explore further; a failure prints the generated input and Hypothesis's reproduction blob.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from typer.testing import CliRunner

EXAMPLES = int(os.environ.get("DWS_FUZZ_EXAMPLES", "60"))
RANDOM_SEED = os.environ.get("DWS_FUZZ_SEED", "") == "random"

settings.register_profile(
    "dws-fuzz",
    max_examples=EXAMPLES,
    derandomize=not RANDOM_SEED,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

#: Outcomes seen by the contract, for the session summary: ("inspect", "exit 1"), …
OUTCOMES: Counter[tuple[str, str]] = Counter()


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


def run_cli(args: Sequence[str]) -> Outcome:
    from dwscli.cli.app import app

    result = CliRunner().invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"dws {' '.join(args)} raised {result.exception!r}")
    return Outcome(result.exit_code, result.stdout, result.stderr)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def check_contract(
    args: Sequence[str],
    workdir: Path,
    inputs: Sequence[Path],
    outputs: Sequence[Path] = (),
    *,
    label: str,
    max_error_lines: int = 1,
) -> Outcome:
    """Run ``dws args`` and assert the contract.

    Exit 0 with every output written, or exit 1 with one ``error:`` line (and at most a
    ``hint:``) and no output; never a traceback or an internal error; inputs untouched; no other
    file left in ``workdir``.
    """
    before = {p: digest(p) for p in inputs}
    files_before = listing(workdir)
    outcome = run_cli(args)
    OUTCOMES[(label, f"exit {outcome.code}")] += 1
    assert outcome.code in (0, 1), (outcome.code, outcome.stderr)
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert "internal error" not in outcome.stderr, outcome.stderr
    assert "\x1b" not in outcome.stderr, "a control character reached the terminal"
    for path, value in before.items():
        assert digest(path) == value, f"{path} was modified"
    expected = set(files_before) | (
        {str(o.relative_to(workdir)) for o in outputs} if outcome.code == 0 else set()
    )
    assert set(listing(workdir)) == expected, (listing(workdir), expected)
    if outcome.code == 1:
        errors = [line for line in outcome.stderr.splitlines() if line.startswith("error:")]
        others = [
            line
            for line in outcome.stderr.splitlines()
            if line.strip()
            and not line.startswith(("error:", "hint:"))
            and "checkpoints could not be read" not in line
            and "checkpoints failed" not in line
        ]
        assert 1 <= len(errors) <= max_error_lines, outcome.stderr
        assert others == [], outcome.stderr
    return outcome
