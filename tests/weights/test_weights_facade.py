"""checkpoint.py is a thin facade over modules split by concern; activations live in one table."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import dwscli
from dwscli.weights import activations, checkpoint, fileformat, layout, loadsave, metadata
from dwscli.weights.spec import MLPSpec

PACKAGE = Path(dwscli.__file__).parent


def test_facade_reexports_the_public_names() -> None:
    homes = (fileformat, layout, loadsave, metadata)
    for name in checkpoint.__all__:
        value = getattr(checkpoint, name)
        assert any(getattr(home, name, None) is value for home in homes), name
    tree = ast.parse((PACKAGE / "weights" / "checkpoint.py").read_text())
    definitions = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert definitions == [], "the facade defines nothing itself"


def test_each_split_module_is_small() -> None:
    for module in (fileformat, layout, loadsave, metadata, activations):
        assert len(Path(module.__file__).read_text().splitlines()) < 450, module.__name__


def test_no_activation_table_outside_the_one_table() -> None:
    """No other module spells out activation names as data (aliases, lists, if-chains)."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "activations.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in ("leaky_relu", "siren", "lrelu"):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []


@pytest.mark.parametrize("name", activations.ACTIVATIONS)
def test_every_table_activation_runs_everywhere(name: str) -> None:
    from dwscli.weights.functional import mlp_forward
    from dwscli.weights.space import WeightSpace

    spec = MLPSpec.parse(f"2-4-1:{name}")
    space = WeightSpace.random(spec, 1, generator=torch.Generator().manual_seed(0))
    assert mlp_forward(space, torch.zeros(3, 2)).shape == (1, 3, 1)
    assert metadata.parse_activation(name.upper().replace("_", "-"), "x")[0] == name
    entry = activations.ACTIVATION_TABLE[name]
    for alias in entry.aliases:
        assert activations.canonical_activation(alias) == name
    if entry.module is not None:
        from dwscli.nn.layers import activation_module

        assert activation_module(name)(torch.zeros(2)).shape == (2,)
