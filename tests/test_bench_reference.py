"""benchmarks/bench_layers.py prints only what it measures: the reference DWSNets column comes
from a checkout given with --reference DIR (here a stand-in with the reference's interface) and
is absent without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nfn")

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "bench_layers.py"
QUICK = [
    "--allow-busy",
    "--threads",
    "1",
    "--repeats",
    "3",
    "--warmup",
    "1",
    "--batches",
    "2",
    "--no-memory",
]

STAND_IN = '''
import torch
from torch import nn


class DWSModelForClassification(nn.Module):
    """Stand-in with the reference's constructor and input layout (weights [B, in, out, 1])."""

    def __init__(self, weight_shapes, bias_shapes, input_features, hidden_dim, n_hidden=2,
                 n_classes=10, reduction="max", bias=True, n_fc_layers=1, num_heads=8,
                 set_layer="sab", n_out_fc=1, dropout_rate=0.0, input_dim_downsample=None,
                 init_scale=1.0, init_off_diag_scale_penalty=1.0, bn=False, add_skip=False,
                 add_layer_skip=False, equiv_out_features=None, diagonal=False):
        super().__init__()
        size = sum(i * o for i, o in weight_shapes) + sum(o for (o,) in bias_shapes)
        self.linear = nn.Linear(size, n_classes)

    def forward(self, x):
        weights, biases = x
        flat = torch.cat([t.flatten(1) for t in (*weights, *biases)], dim=1)
        return self.linear(flat)
'''


def run_bench(*extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(BENCH), *QUICK, *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_reference_column_absent_without_a_checkout() -> None:
    result = run_bench()
    assert result.returncode == 0, result.stderr
    assert "reference DWSNets / model" not in result.stdout
    assert "reference DWSNets not measured" in result.stdout
    assert "| 2 | fwd+bwd | nfn-HNP |" in result.stdout


def test_reference_column_measured_from_a_checkout(tmp_path: Path) -> None:
    (tmp_path / "nn").mkdir()
    (tmp_path / "nn" / "__init__.py").write_text("")
    (tmp_path / "nn" / "models.py").write_text(STAND_IN)
    result = run_bench("--reference", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "reference DWSNets / model |" in result.stdout
    reference_rows = [
        line for line in result.stdout.splitlines() if "| reference DWSNets |" in line
    ]
    assert len(reference_rows) == 2  # fwd and fwd+bwd at batch 2, timed in this run
    # Our rows carry a measured ratio in the reference column (a number, not a placeholder).
    ours = [line for line in result.stdout.splitlines() if "| dws (ours) |" in line]
    assert all(line.rstrip(" |").endswith("x") for line in ours)


def test_reference_that_is_not_a_checkout_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_bench("--reference", str(tmp_path))
    assert result.returncode != 0
    assert "not a DWSNets checkout" in result.stderr
    assert "Traceback" not in result.stderr
