"""The equivariant (weights -> weights) kind of the ``inr2vec`` and ``transformer`` baselines.

Both predict a change that is added to the input, with the output layer scaled down at
initialisation (``output_init_scale``), as ``mlp`` does: the output has the input's shapes, an
untrained model is close to the identity (exactly the identity with the output layer zeroed),
every parameter is trained by a weights -> weights loss, and a few hundred steps learn a simple
edit. Shapes on the registry's spec, card round trips and the trainer on the ``adapt`` task are
covered for every equivariant-capable arch in tests/nn/test_archs.py, and the declared symmetry
(``none``) in tests/nn/test_arch_symmetry.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dwscli.nn.archs import get_arch
from dwscli.processors.loading import load_processor
from dwscli.train.card import write_processor
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

NAMES = ["inr2vec", "transformer"]
SPECS = ["3-5-6-2", "2-4-3-5-1", "4-6-3"]
#: small models, so that the training test is quick on one CPU thread
SMALL = {
    "inr2vec": {"hidden_features": 32, "head_hidden": [64]},
    "transformer": {"d_model": 32, "num_heads": 2, "dim_feedforward": 64},
}


def build(name: str, spec: MLPSpec, seed: int = 0, **options: Any) -> nn.Module:
    arch = get_arch(name)
    torch.manual_seed(seed)
    model = arch.build(spec, "equivariant", replace(arch.options_type(), **options), 1)
    fit = WeightSpace.random(spec, 16, generator=torch.Generator().manual_seed(1))
    arch.fit_normalizer(model, fit)
    return model


def nets(spec: MLPSpec, size: int, seed: int) -> WeightSpace:
    return WeightSpace.random(spec, size, generator=torch.Generator().manual_seed(seed))


def output_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose outputs are the predicted change."""
    if hasattr(model, "decode"):  # transformer: one token decoder per layer
        return list(model.decode)
    return [model.decoder[-1]]  # inr2vec: the decoder MLP's last layer


def largest_change(model: nn.Module, x: WeightSpace) -> float:
    """Largest |output - input| in normalised units (divided by each tensor's fitted std)."""
    with torch.no_grad():
        out = model(x)
    std = model.weight_normalizer.std
    depth = x.spec.depth
    pairs = [
        *((a, b, std[i]) for i, (a, b) in enumerate(zip(out.weights, x.weights))),
        *((a, b, std[depth + i]) for i, (a, b) in enumerate(zip(out.biases, x.biases))),
    ]
    return max(float(((a - b) / s).abs().max()) for a, b, s in pairs)


@pytest.mark.parametrize("text", SPECS)
@pytest.mark.parametrize("name", NAMES)
def test_output_has_the_input_shapes(name: str, text: str) -> None:
    spec = MLPSpec.parse(text)
    model = build(name, spec).eval()
    for size in (1, 4):
        x = nets(spec, size, seed=2)
        with torch.no_grad():
            out = model(x)
        assert isinstance(out, WeightSpace) and out.spec == x.spec
        assert [t.shape for t in out.tensors()] == [t.shape for t in x.tensors()]
        assert all(torch.isfinite(t).all() for t in out.tensors())


@pytest.mark.parametrize("name", NAMES)
def test_an_untrained_model_is_close_to_the_identity(name: str) -> None:
    """The default ``output_init_scale`` (1e-2) keeps the change small; at scale 1 the same
    model changes the weights by far more, so the option is what makes the difference."""
    spec = MLPSpec.parse("3-5-6-2")
    x = nets(spec, 4, seed=3)
    small = largest_change(build(name, spec).eval(), x)
    large = largest_change(build(name, spec, output_init_scale=1.0).eval(), x)
    assert 0.0 < small < 0.05
    assert large > 20 * small


@pytest.mark.parametrize("name", NAMES)
def test_a_zeroed_output_layer_gives_the_input_exactly(name: str) -> None:
    spec = MLPSpec.parse("2-4-3-5-1")
    model = build(name, spec).eval()
    with torch.no_grad():
        for layer in output_layers(model):
            for p in layer.parameters():
                p.zero_()
    x = nets(spec, 3, seed=4)
    with torch.no_grad():
        out = model(x)
    assert all(torch.equal(a, b) for a, b in zip(out.tensors(), x.tensors()))


@pytest.mark.parametrize("name", NAMES)
def test_a_weights_to_weights_loss_reaches_every_parameter(name: str) -> None:
    spec = MLPSpec.parse("3-5-6-2")
    model = build(name, spec, output_init_scale=1.0).train()
    x = nets(spec, 4, seed=5)
    target = nets(spec, 4, seed=6)
    loss = sum(((a - b) ** 2).mean() for a, b in zip(model(x).tensors(), target.tensors()))
    loss.backward()
    for key, p in model.named_parameters():
        assert p.grad is not None, key
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, key


def doubled_first_layer(x: WeightSpace) -> WeightSpace:
    return WeightSpace([2 * x.weights[0], *x.weights[1:]], list(x.biases), x.spec)


def adaptation_loss(model: nn.Module, x: WeightSpace) -> torch.Tensor:
    """Mean squared error to the same nets with their first-layer weights doubled."""
    target = doubled_first_layer(x)
    out = model(x)
    return sum(((a - b) ** 2).sum() for a, b in zip(out.tensors(), target.tensors())) / (
        x.batch_size * x.spec.num_parameters
    )


@pytest.mark.parametrize("name", NAMES)
def test_training_learns_a_simple_weight_edit(name: str) -> None:
    """Learn to double the first layer's weights of small random MLPs, an adaptation-style
    objective: 300 Adam steps cut the loss on the training nets. The transformer decodes each
    neuron from its own token, so it also learns the edit for nets it was not trained on;
    inr2vec cannot (see the next test), so only its fit to the training nets is asked for."""
    spec = MLPSpec.parse("3-6-2")
    model = build(name, spec, **SMALL[name])
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    train_nets = nets(spec, 64, seed=7)
    held_out = nets(spec, 64, seed=8)
    generator = torch.Generator().manual_seed(9)
    with torch.no_grad():
        before = [float(adaptation_loss(model.eval(), x)) for x in (train_nets, held_out)]
    model.train()
    for _ in range(300):
        index = torch.randint(0, train_nets.batch_size, (32,), generator=generator)
        loss = adaptation_loss(model, train_nets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = [float(adaptation_loss(model.eval(), x)) for x in (train_nets, held_out)]
    assert after[0] < 0.2 * before[0], (before, after)
    if name == "transformer":
        assert after[1] < 0.1 * before[1], (before, after)


def test_inr2vec_changes_do_not_depend_on_the_order_of_a_layers_rows() -> None:
    """inr2vec pools each layer's rows, and layer 1's rows are seen by no other encoder: swapping
    two rows of layer 1 alone (``W_1``, ``b_1``, not ``W_2``'s columns: a different net) leaves
    the code, hence the predicted change, as it was. Its decoder therefore cannot tell which
    neuron an edit belongs to on unseen nets."""
    spec = MLPSpec.parse("3-6-2")
    model = build("inr2vec", spec, output_init_scale=1.0).eval()
    x = nets(spec, 2, seed=11)
    order = torch.tensor([1, 0, 2, 3, 4, 5])
    swapped = WeightSpace(
        [x.weights[0][:, order], *x.weights[1:]], [x.biases[0][:, order], *x.biases[1:]], spec
    )
    with torch.no_grad():
        change = [a - b for a, b in zip(model(x).tensors(), x.tensors())]
        change_swapped = [a - b for a, b in zip(model(swapped).tensors(), swapped.tensors())]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(change, change_swapped))
    assert max(float(a.abs().max()) for a in change) > 1e-2


# ------------------------------------------------------------------------------------------------
# invariant models and cards written before the equivariant kind


@pytest.mark.parametrize("name", NAMES)
def test_invariant_models_hold_no_decoder(name: str) -> None:
    """An invariant model has exactly the parameters it had before the equivariant kind, so
    processors saved then load strictly."""
    arch = get_arch(name)
    model = arch.build(MLPSpec.parse("3-5-6-2"), "invariant", arch.options_type(), 4)
    assert not any(k.startswith(("decode", "decoder")) for k in model.state_dict())
    assert any(k.startswith("head.") for k in model.state_dict())


@pytest.mark.parametrize("kind", ["invariant", "equivariant"])
@pytest.mark.parametrize("name", NAMES)
def test_cards_without_output_init_scale_load(name: str, kind: str, tmp_path: Path) -> None:
    """Cards written before the option existed lack it; they load with its default."""
    arch = get_arch(name)
    spec = MLPSpec.parse("3-5-6-2")
    model = arch.build(spec, kind, arch.options_type(), 3)
    config = arch.card_config(arch.options_type(), 3)
    del config["output_init_scale"]
    card = {
        "name": "old",
        "version": "1",
        "task": "test",
        "model": {"kind": kind, "arch": name, "config": config},
        "input": {"spec": str(spec)},
    }
    path, _ = write_processor(tmp_path, "old", card, model)
    processor = load_processor(str(path))
    assert processor.model.options.output_init_scale == 1e-2
    x = nets(spec, 2, seed=10)
    model.eval()
    with torch.no_grad():
        a, b = model(x), processor.model(x)
    pairs = zip(a.tensors(), b.tensors()) if kind == "equivariant" else [(a, b)]
    assert all(torch.equal(u, v) for u, v in pairs)
