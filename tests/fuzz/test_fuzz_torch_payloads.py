"""Fuzzing ``.pt`` files: generated payloads of every shape a pickle can take."""

from __future__ import annotations

from pathlib import Path

import torch
from fuzz_contract import check_contract  # type: ignore[import-not-found]
from hypothesis import given, settings
from hypothesis import strategies as st

from dwscli.errors import DwsError
from dwscli.weights.checkpoint import load_checkpoint

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool]


@st.composite
def tensors(draw: st.DrawFn) -> torch.Tensor:
    shape = draw(st.lists(st.integers(0, 4), max_size=3))
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["normal", "normal", "nan", "big", "meta", "sparse", "view"]))
    if kind == "meta":
        return torch.empty(shape, device="meta", dtype=dtype)
    t = torch.randn(shape).to(dtype) if dtype != torch.bool else torch.zeros(shape, dtype=dtype)
    if kind == "nan" and t.is_floating_point() and t.numel():
        t.view(-1)[0] = float("nan")
    if kind == "big" and t.is_floating_point():
        t = t * 1e30
    if kind == "sparse" and len(shape) == 2 and t.is_floating_point():
        return t.to_sparse()
    if kind == "view" and t.dim() == 2 and t.shape[1] > 1:
        return t[:, ::2]
    return t


LEAVES = st.one_of(
    tensors(), st.integers(), st.text(max_size=5), st.none(), st.floats(allow_nan=True)
)
KEYS = st.one_of(
    st.sampled_from(["0.weight", "0.bias", "2.weight", "2.bias", "state_dict", "model", "x"]),
    st.integers(-2, 2),
)


@st.composite
def state_dicts(draw: st.DrawFn) -> dict:
    """A plausible MLP state dict, then perturbed: an entry dropped, added or replaced."""
    widths = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4))
    state: dict = {}
    for i, (n_in, n_out) in enumerate(zip(widths, widths[1:])):
        state[f"{2 * i}.weight"] = torch.randn(n_out, n_in)
        state[f"{2 * i}.bias"] = torch.randn(n_out)
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(sorted(state)))
        action = draw(st.sampled_from(["drop", "replace", "add"]))
        if action == "drop" and len(state) > 1:
            del state[key]
        elif action == "replace":
            state[key] = draw(tensors())
        else:
            state[draw(st.sampled_from(["9.weight", "bn.running_var", "x.bias"]))] = draw(tensors())
    wrapper = draw(st.sampled_from([None, None, "state_dict", "model"]))
    return state if wrapper is None else {wrapper: state, "epoch": 3}


PAYLOADS = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.dictionaries(KEYS, children, max_size=5), st.lists(children, max_size=3)
    ),
    max_leaves=8,
)


@settings(settings.get_profile("dws-fuzz"))
@given(payload=st.one_of(state_dicts(), PAYLOADS), suffix=st.sampled_from([".pt", ".pth", ".bin"]))
def test_generated_torch_payloads(payload: object, suffix: str, fresh_dir) -> None:
    directory: Path = fresh_dir()
    source = directory / f"input{suffix}"
    torch.save(payload, source)
    try:
        load_checkpoint(source)
    except DwsError as error:
        assert "\n" not in error.message
    check_contract(["inspect", str(source)], directory, [source], label="inspect .pt")
    out = directory / "out.safetensors"
    outcome = check_contract(
        ["permute", str(source), "-o", str(out), "--seed", "0"],
        directory,
        [source],
        [out],
        label="permute .pt",
    )
    if outcome.code == 0:
        out.unlink()
