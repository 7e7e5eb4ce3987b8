"""The README's test command sets everything up, and .ci/run runs exactly that command."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- .ci/run runs the command of the next bash block, verbatim -->"


def readme_test_command() -> str:
    text = (REPO / "README.md").read_text()
    assert text.count(MARKER) == 1
    block = re.search(r"```bash\n(.*?)\n```", text[text.index(MARKER) :], re.S)
    assert block is not None
    return block.group(1).strip()


def test_readme_test_command_installs_the_data_sets_before_the_tests() -> None:
    steps = [step.strip() for step in readme_test_command().split("&&")]
    assert steps == [
        "pip install torch==2.13.0",
        "pip install -e '.[dev]'",
        "dws data install",
        "pytest",
    ]


def test_ci_runs_the_readme_command_verbatim() -> None:
    """.ci/run's own extraction (its awk program, run here) gives the README's command."""
    script = (REPO / ".ci/run").read_text()
    extraction = re.search(r'command="\$\((awk .*?)\)"\n', script, re.S)
    assert extraction is not None
    result = subprocess.run(
        ["bash", "-c", extraction.group(1)], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == readme_test_command()
    assert 'bash -euo pipefail -c "${command}" </dev/null' in script
