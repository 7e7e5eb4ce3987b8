"""Checkpoint I/O: layouts, dtypes, byte-identical round trips, provenance and atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import safetensors.torch
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from dwscli import __version__
from dwscli.errors import DwsError
from dwscli.weights.checkpoint import (
    load_checkpoint,
    natural_key,
    save_checkpoint,
    save_space,
)
from dwscli.weights.functional import mlp_forward
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import apply_permutation, random_permutation

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
SAFETENSORS_DTYPE = {
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float64: "F64",
}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def raw_entries(path: Path) -> tuple[dict[str, tuple[str, list[int], bytes]], dict[str, str]]:
    """Each tensor's (dtype, shape, raw bytes) and the metadata, parsed independently of dws."""
    data = Path(path).read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    metadata = header.pop("__metadata__", {})
    body = data[8 + n :]
    entries = {
        key: (v["dtype"], v["shape"], body[v["data_offsets"][0] : v["data_offsets"][1]])
        for key, v in header.items()
    }
    return entries, metadata


def random_state_dict(
    widths: list[int],
    dtype: torch.dtype,
    generator: torch.Generator,
    name=lambda i: str(2 * i),
    bias: list[bool] | None = None,
) -> dict[str, torch.Tensor]:
    state = {}
    for i in range(len(widths) - 1):
        w = torch.randn(widths[i + 1], widths[i], generator=generator, dtype=torch.float64)
        state[f"{name(i)}.weight"] = w.to(dtype)
        if bias is None or bias[i]:
            b = torch.randn(widths[i + 1], generator=generator, dtype=torch.float64)
            state[f"{name(i)}.bias"] = b.to(dtype)
    return state


def write(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    safetensors.torch.save_file(state, str(path), metadata=metadata)
    return path


@pytest.fixture
def gen() -> torch.Generator:
    return torch.Generator().manual_seed(1234)


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_round_trip_is_byte_identical_and_keeps_metadata(tmp_path, gen, dtype):
    state = random_state_dict([3, 8, 8, 2], dtype, gen)
    metadata = {"activation": "tanh", "trained_on": "mnist", "dws.custom": "kept"}
    src = write(tmp_path / "in.safetensors", state, metadata)

    ckpt = load_checkpoint(src)
    assert ckpt.spec == MLPSpec((3, 8, 8, 2), "tanh")
    assert ckpt.activation_source == "metadata:activation"
    assert ckpt.layout.dtypes == {k: dtype for k in state}
    expected_space_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    assert ckpt.space.dtype == expected_space_dtype

    out = save_checkpoint(tmp_path / "out.safetensors", ckpt, provenance={"processor": "noop"})
    assert out == tmp_path / "out.safetensors"
    in_entries, _ = raw_entries(src)
    out_entries, out_meta = raw_entries(out)
    assert out_entries == in_entries  # same keys, dtypes, shapes and bytes
    for key, value in metadata.items():
        assert out_meta[key] == value
    assert out_meta["dws.version"] == __version__
    assert out_meta["dws.source"] == "in.safetensors"
    assert out_meta["dws.processor"] == "noop"
    assert out_meta["dws.spec"] == "3-8-8-2:tanh"

    # and the written file reads back to the same network
    again = load_checkpoint(out)
    for a, b in zip(again.space.tensors(), ckpt.space.tensors(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
def test_modified_space_is_written_in_the_original_dtype(tmp_path, gen, dtype):
    state = random_state_dict([4, 6, 5, 3], dtype, gen)
    src = write(tmp_path / "in.safetensors", state)
    ckpt = load_checkpoint(src)

    space = ckpt.space.clone()
    space.weights[1] = space.weights[1] * 3 + 0.25
    out = save_checkpoint(tmp_path / "out.safetensors", ckpt, space)

    in_entries, _ = raw_entries(src)
    out_entries, _ = raw_entries(out)
    assert out_entries.keys() == in_entries.keys()
    for key in in_entries:
        assert out_entries[key][:2] == in_entries[key][:2]  # dtype and shape
        if key != "2.weight":
            assert out_entries[key][2] == in_entries[key][2], key
    assert out_entries["2.weight"][2] != in_entries["2.weight"][2]

    written = safetensors.torch.load_file(str(out))
    assert written["2.weight"].dtype == dtype
    assert torch.equal(written["2.weight"], space.weights[1][0].to(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["float16", "bfloat16"])
def test_untouched_nan_payloads_and_negative_zero_survive(tmp_path, gen, dtype):
    # float16/bfloat16 -> float32 -> back canonicalises NaN payloads, so byte identity needs the
    # original tensor object to be written, not a cast of the processed value.
    w = torch.randn(4, 3, generator=gen).to(dtype)
    bits = w.view(torch.int16)
    bits[0, 0] = 0x7C01 if dtype == torch.float16 else 0x7F81  # signalling NaN with a payload
    bits[1, 1] = -0x8000  # -0.0
    state = {"0.weight": w, "0.bias": torch.randn(4, generator=gen).to(dtype)}
    assert not torch.equal(w.float().to(dtype).view(torch.int16), w.view(torch.int16))

    src = write(tmp_path / "in.safetensors", state)
    ckpt = load_checkpoint(src, allow_nonfinite=True)
    space = ckpt.space.clone()
    space.biases[0] = space.biases[0] * 2  # the bias changes, the weight does not
    out = save_checkpoint(tmp_path / "out.safetensors", ckpt, space)
    assert raw_entries(out)[0]["0.weight"] == raw_entries(src)[0]["0.weight"]
    assert raw_entries(out)[0]["0.bias"] != raw_entries(src)[0]["0.bias"]


def test_float64_edits_keep_full_precision(tmp_path, gen):
    state = random_state_dict([2, 5, 1], torch.float64, gen)
    ckpt = load_checkpoint(write(tmp_path / "in.safetensors", state))
    space = ckpt.space.clone()
    space.biases[0] = space.biases[0] + 1e-12  # invisible in float32
    out = save_checkpoint(tmp_path / "out.safetensors", ckpt, space)
    written = safetensors.torch.load_file(str(out))
    assert torch.equal(written["0.bias"], state["0.bias"] + 1e-12)
    assert not torch.equal(written["0.bias"], state["0.bias"])


def test_permuted_network_round_trips_with_the_same_function(tmp_path, gen):
    state = random_state_dict([3, 16, 16, 2], torch.float32, gen)
    ckpt = load_checkpoint(write(tmp_path / "in.safetensors", state, {"activation": "tanh"}))
    permuted = apply_permutation(ckpt.space, random_permutation(ckpt.space, generator=gen))
    out = save_checkpoint(tmp_path / "perm.safetensors", ckpt, permuted)

    back = load_checkpoint(out)
    assert back.spec == ckpt.spec
    for a, b in zip(back.space.tensors(), permuted.tensors(), strict=True):
        assert torch.equal(a, b)  # float32 in, float32 out: exact
    x = torch.randn(32, 3, generator=gen)
    torch.testing.assert_close(
        mlp_forward(back.space, x), mlp_forward(ckpt.space, x), atol=1e-5, rtol=1e-5
    )
    # the input and output layers' biases are not permuted: the last bias stays byte-identical
    in_entries, _ = raw_entries(tmp_path / "in.safetensors")
    out_entries, _ = raw_entries(out)
    assert out_entries["4.bias"] == in_entries["4.bias"]
    assert out_entries["0.weight"] != in_entries["0.weight"]


def test_nonfinite_or_overflowing_new_values_are_not_written(tmp_path, gen):
    state = random_state_dict([2, 4, 1], torch.float16, gen)
    ckpt = load_checkpoint(write(tmp_path / "in.safetensors", state))
    space = ckpt.space.clone()
    space.weights[0][0, 0, 0] = 1e6  # finite in float32, inf in float16
    with pytest.raises(DwsError, match="overflow when cast back to float16"):
        save_checkpoint(tmp_path / "out.safetensors", ckpt, space)
    space.weights[0][0, 0, 0] = float("nan")
    with pytest.raises(DwsError, match="NaN/Inf"):
        save_checkpoint(tmp_path / "out.safetensors", ckpt, space)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.safetensors"]


def test_batch_and_width_mismatches_are_refused(tmp_path, gen):
    state = random_state_dict([2, 4, 1], torch.float32, gen)
    ckpt = load_checkpoint(write(tmp_path / "in.safetensors", state))
    batch = WeightSpace.stack([ckpt.space, ckpt.space])
    with pytest.raises(DwsError, match="batch of 2"):
        save_checkpoint(tmp_path / "out.safetensors", ckpt, batch)
    other = WeightSpace.random(MLPSpec((2, 5, 1)))
    with pytest.raises(DwsError, match="do not fit"):
        save_checkpoint(tmp_path / "out.safetensors", ckpt, other)
    assert not (tmp_path / "out.safetensors").exists()


# --------------------------------------------------------------------------------------------
# key layouts
# --------------------------------------------------------------------------------------------
def test_natural_key_orders_numbers_by_value():
    names = ["net.10", "net.2", "net.1", "fc10", "fc2", "layers.0.linear", "net.layers.11"]
    assert sorted(names, key=natural_key) == [
        "fc2", "fc10", "layers.0.linear", "net.1", "net.2", "net.10", "net.layers.11",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "modules"),
    [
        (lambda i: str(2 * i), ["0", "2", "4", "6"]),  # nn.Sequential with activations
        (lambda i: f"fc{i + 1}", ["fc1", "fc2", "fc3", "fc4"]),
        (lambda i: f"layers.{i}.linear", [f"layers.{i}.linear" for i in range(4)]),
        # lexicographic order would put net.layers.12 before net.layers.4
        (
            lambda i: f"net.layers.{4 * i}",
            ["net.layers.0", "net.layers.4", "net.layers.8", "net.layers.12"],
        ),
    ],
    ids=["sequential", "fc", "layers.i.linear", "nested"],
)
def test_key_layouts(tmp_path, gen, name, modules):
    widths = [3, 7, 6, 5, 2]
    state = random_state_dict(widths, torch.float32, gen, name=name)
    ckpt = load_checkpoint(write(tmp_path / "in.safetensors", state))
    assert ckpt.spec.widths == tuple(widths)
    assert [layer.module for layer in ckpt.layout.layers] == modules
    for i, layer in enumerate(ckpt.layout.layers):
        assert torch.equal(ckpt.space.weights[i][0], state[layer.weight_key])
        assert torch.equal(ckpt.space.biases[i][0], state[layer.bias_key])


def test_natural_sort_puts_net_2_before_net_10(tmp_path, gen):
    # Only the natural order chains: lexicographic order (net.10 first) would not.
    state = {
        "net.2.weight": torch.randn(5, 3, generator=gen),
        "net.2.bias": torch.randn(5, generator=gen),
        "net.10.weight": torch.randn(4, 5, generator=gen),
        "net.10.bias": torch.randn(4, generator=gen),
    }
    ckpt = load_checkpoint(write(tmp_path / "in.safetensors", state))
    assert [layer.module for layer in ckpt.layout.layers] == ["net.2", "net.10"]
    assert ckpt.spec.widths == (3, 5, 4)


def test_twelve_nested_layers_are_ordered_naturally(tmp_path, gen):
    widths = list(range(2, 15))  # 12 layers of distinct widths: only one order chains
    state = random_state_dict(widths, torch.float32, gen, name=lambda i: f"net.layers.{i}")
    ckpt = load_checkpoint(write(tmp_path / "in.safetensors", state))
    assert ckpt.spec.widths == tuple(widths)
    assert ckpt.layout.layers[10].module == "net.layers.10"


def test_single_bare_linear_layer(tmp_path, gen):
    state = nn.Linear(4, 3).state_dict()  # keys "weight" and "bias"
    ckpt = load_checkpoint(write(tmp_path / "in.safetensors", state))
    assert ckpt.spec.widths == (4, 3)
    assert ckpt.layout.layers[0].module == ""


def test_bias_free_layer_is_read_as_zero_and_written_back_without_bias(tmp_path, gen):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8, bias=False), nn.ReLU(), nn.Linear(8, 2))
    src = write(tmp_path / "in.safetensors", model.state_dict())
    ckpt = load_checkpoint(src)
    assert ckpt.layout.layers[0].bias_key is None
    assert ckpt.layout.bias_free_layers == [0]
    assert torch.equal(ckpt.space.biases[0], torch.zeros(1, 8))
    x = torch.randn(16, 3, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(mlp_forward(ckpt.space, x)[0], model(x), atol=1e-6, rtol=0)

    permuted = apply_permutation(ckpt.space, random_permutation(ckpt.space, generator=gen))
    out = save_checkpoint(tmp_path / "out.safetensors", ckpt, permuted)
    entries, _ = raw_entries(out)
    assert sorted(entries) == ["0.weight", "2.bias", "2.weight"]
    model.load_state_dict(safetensors.torch.load_file(str(out)))  # still fits the module

    # a non-zero bias for the bias-free layer cannot be written in this layout …
    biased = ckpt.space.clone()
    biased.biases[0] = biased.biases[0] + 0.5
    with pytest.raises(DwsError, match="no bias"):
        save_checkpoint(tmp_path / "biased.safetensors", ckpt, biased)
    assert not (tmp_path / "biased.safetensors").exists()
    # … unless it is dropped explicitly
    out2 = save_checkpoint(tmp_path / "biased.safetensors", ckpt, ckpt.constrain(biased))
    assert sorted(raw_entries(out2)[0]) == ["0.weight", "2.bias", "2.weight"]


# --------------------------------------------------------------------------------------------
# checkpoints written by plain torch, and the spec
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("act_module", "activation"),
    [(nn.ReLU, None), (nn.Tanh, "tanh"), (nn.Sigmoid, "sigmoid"), (nn.GELU, "gelu")],
)
def test_plain_torch_checkpoint_reads_with_the_right_spec(tmp_path, act_module, activation):
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Linear(5, 32), act_module(), nn.Linear(32, 16), act_module(), nn.Linear(16, 3)
    )
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file(model.state_dict(), str(path))

    ckpt = load_checkpoint(path, activation=activation)
    assert ckpt.spec == MLPSpec((5, 32, 16, 3), activation or "relu")
    assert ckpt.activation_source == ("argument" if activation else "default")
    x = torch.randn(64, 5)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(mlp_forward(ckpt.space, x)[0], expected, atol=1e-6, rtol=1e-6)


def test_sine_options_from_metadata(tmp_path, gen):
    state = random_state_dict([2, 16, 1], torch.float32, gen)
    path = write(tmp_path / "siren.safetensors", state, {"activation": "sine", "w0": "30"})
    ckpt = load_checkpoint(path)
    assert str(ckpt.spec) == "2-16-1:sine;w0=30"
    assert ckpt.activation_source == "metadata:activation"
    # the argument fills in only what the file does not say; agreeing is fine
    assert load_checkpoint(path, activation="sine").spec == ckpt.spec
    with pytest.raises(DwsError, match="relu"):
        load_checkpoint(path, activation="relu")


def test_dws_spec_metadata_wins_and_must_match_the_tensors(tmp_path, gen):
    state = random_state_dict([2, 16, 1], torch.float32, gen)
    meta = {"dws.spec": "2-16-1:sine;w0=10", "activation": "relu"}
    ckpt = load_checkpoint(write(tmp_path / "a.safetensors", state, meta))
    assert str(ckpt.spec) == "2-16-1:sine;w0=10"
    assert ckpt.activation_source == "metadata:dws.spec"

    bad = write(tmp_path / "b.safetensors", state, {"dws.spec": "2-8-1:sine"})
    with pytest.raises(DwsError, match=r"b\.safetensors.*2-8-1.*2-16-1"):
        load_checkpoint(bad)


def test_activation_argument_with_options(tmp_path, gen):
    state = random_state_dict([2, 8, 1], torch.float32, gen)
    ckpt = load_checkpoint(write(tmp_path / "a.safetensors", state), activation="sine;w0=30")
    assert str(ckpt.spec) == "2-8-1:sine;w0=30"
    with pytest.raises(DwsError, match="unknown activation"):
        load_checkpoint(tmp_path / "a.safetensors", activation="swishy")


def test_default_activation_is_not_written_as_fact(tmp_path, gen):
    state = random_state_dict([2, 8, 1], torch.float32, gen)
    ckpt = load_checkpoint(write(tmp_path / "a.safetensors", state))
    out = save_checkpoint(tmp_path / "b.safetensors", ckpt)
    assert "dws.spec" not in raw_entries(out)[1]
    assert load_checkpoint(out).activation_source == "default"


# --------------------------------------------------------------------------------------------
# .pt state dicts
# --------------------------------------------------------------------------------------------
def test_pt_state_dict_is_read(tmp_path):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 10), nn.Tanh(), nn.Linear(10, 2))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    ckpt = load_checkpoint(tmp_path / "model.pt", activation="tanh")
    assert ckpt.layout.format == "torch"
    assert ckpt.spec == MLPSpec((4, 10, 2), "tanh")
    x = torch.randn(8, 4)
    with torch.no_grad():
        torch.testing.assert_close(mlp_forward(ckpt.space, x)[0], model(x), atol=1e-6, rtol=0)

    # wrapped training checkpoints are unwrapped; other entries are ignored
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "wrapped.pth")
    assert load_checkpoint(tmp_path / "wrapped.pth").spec.widths == (4, 10, 2)

    # written back, the output is safetensors with the same keys; .pt output is refused
    out = save_checkpoint(tmp_path / "out.safetensors", ckpt)
    assert sorted(raw_entries(out)[0]) == sorted(model.state_dict())
    with pytest.raises(DwsError, match="safetensors only"):
        save_checkpoint(tmp_path / "out.pt", ckpt)
    assert not (tmp_path / "out.pt").exists()


class _Trap:
    """Unpickling this would create a file: weights_only loading must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pt_is_read_with_weights_only_and_never_runs_pickled_code(tmp_path):
    marker = tmp_path / "pwned"
    state = {"0.weight": torch.zeros(2, 2), "0.bias": torch.zeros(2), "trap": _Trap(str(marker))}
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(DwsError, match=r"evil\.pt.*weights_only") as info:
        load_checkpoint(tmp_path / "evil.pt")
    assert "\n" not in str(info.value)
    assert not marker.exists()


# --------------------------------------------------------------------------------------------
# atomic, non-destructive writes
# --------------------------------------------------------------------------------------------
def test_existing_output_is_refused_without_force(tmp_path, gen):
    src = write(tmp_path / "in.safetensors", random_state_dict([2, 4, 1], torch.float32, gen))
    ckpt = load_checkpoint(src)
    out = tmp_path / "out.safetensors"
    out.write_bytes(b"precious")
    with pytest.raises(DwsError, match="exists; pass --force"):
        save_checkpoint(out, ckpt)
    assert out.read_bytes() == b"precious"
    save_checkpoint(out, ckpt, force=True)
    assert load_checkpoint(out).spec == ckpt.spec
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.safetensors", "out.safetensors"]


def test_input_is_never_overwritten_without_force(tmp_path, gen):
    src = write(tmp_path / "in.safetensors", random_state_dict([2, 4, 1], torch.float32, gen))
    before = src.read_bytes()
    ckpt = load_checkpoint(src)
    space = ckpt.space.clone()
    space.weights[0] = space.weights[0] + 1
    with pytest.raises(DwsError, match="is the input checkpoint"):
        save_checkpoint(src, ckpt, space)
    # another spelling of the same path is recognised too
    with pytest.raises(DwsError, match="pass --force"):
        save_checkpoint(tmp_path / "." / "in.safetensors", ckpt, space)
    assert src.read_bytes() == before
    save_checkpoint(src, ckpt, space, force=True)
    assert src.read_bytes() != before


def test_failed_write_leaves_nothing_behind(tmp_path, gen, monkeypatch):
    src = write(tmp_path / "in.safetensors", random_state_dict([2, 4, 1], torch.float32, gen))
    ckpt = load_checkpoint(src)

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(DwsError, match=r"out\.safetensors.*No space left"):
        save_checkpoint(tmp_path / "out.safetensors", ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.safetensors"]


def test_output_suffix_and_directory(tmp_path, gen):
    src = write(tmp_path / "in.safetensors", random_state_dict([2, 4, 1], torch.float32, gen))
    ckpt = load_checkpoint(src)
    assert save_checkpoint(tmp_path / "plain", ckpt) == tmp_path / "plain.safetensors"
    with pytest.raises(DwsError, match="unknown output format"):
        save_checkpoint(tmp_path / "x.npz", ckpt)
    with pytest.raises(DwsError, match="does not exist"):
        save_checkpoint(tmp_path / "missing" / "x.safetensors", ckpt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.safetensors", "plain.safetensors"]


def test_output_file_permissions_follow_the_umask(tmp_path, gen):
    src = write(tmp_path / "in.safetensors", random_state_dict([2, 4, 1], torch.float32, gen))
    out = save_checkpoint(tmp_path / "out.safetensors", load_checkpoint(src))
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


# --------------------------------------------------------------------------------------------
# save_space
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("style", "keys"),
    [
        ("sequential", ["0.bias", "0.weight", "2.bias", "2.weight"]),
        ("layers", ["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.weight"]),
        ("fc", ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"]),
    ],
)
def test_save_space_key_styles(tmp_path, gen, style, keys):
    spec = MLPSpec((2, 8, 1), "sine", (("w0", "30"),))
    space = WeightSpace.random(spec, generator=gen)
    out = save_space(tmp_path / f"{style}.safetensors", space, metadata={"k": "v"}, key_style=style)
    entries, meta = raw_entries(out)
    assert sorted(entries) == keys
    assert meta["dws.spec"] == "2-8-1:sine;w0=30" and meta["k"] == "v"
    back = load_checkpoint(out)
    assert back.spec == spec and back.activation_source == "metadata:dws.spec"
    for a, b in zip(back.space.tensors(), space.tensors(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(DwsError, match="exists"):
        save_space(out, space, key_style=style)


def test_save_space_sequential_loads_into_torch(tmp_path, gen):
    space = WeightSpace.random(MLPSpec((3, 5, 4, 2)), generator=gen)
    out = save_space(tmp_path / "s.safetensors", space)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2))
    model.load_state_dict(safetensors.torch.load_file(str(out)))
    x = torch.randn(7, 3, generator=gen)
    with torch.no_grad():
        torch.testing.assert_close(model(x), mlp_forward(space, x)[0], atol=1e-6, rtol=0)


# --------------------------------------------------------------------------------------------
# property test
# --------------------------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    widths=st.lists(st.integers(1, 9), min_size=2, max_size=5),
    dtype=st.sampled_from(DTYPES),
    style=st.sampled_from(["seq", "fc", "nested"]),
    bias_mask=st.lists(st.booleans(), min_size=4, max_size=4),
    edit_layer=st.integers(0, 3),
    seed=st.integers(0, 2**31 - 1),
)
def test_round_trip_property(widths, dtype, style, bias_mask, edit_layer, seed):
    depth = len(widths) - 1
    name = {
        "seq": lambda i: str(2 * i),
        "fc": lambda i: f"fc{i + 1}",
        "nested": lambda i: f"model.net.{i}.linear",
    }[style]
    gen = torch.Generator().manual_seed(seed)
    state = random_state_dict(widths, dtype, gen, name=name, bias=bias_mask[:depth])
    with tempfile.TemporaryDirectory() as tmp:
        src = write(Path(tmp) / "in.safetensors", state, {"note": "x"})
        ckpt = load_checkpoint(src)
        assert ckpt.spec.widths == tuple(widths)

        # unchanged: every tensor byte-identical
        same = save_checkpoint(Path(tmp) / "same.safetensors", ckpt)
        assert raw_entries(same)[0] == raw_entries(src)[0]

        # one layer's weight edited: only that tensor changes, in its own dtype
        layer = edit_layer % depth
        space = ckpt.space.clone()
        space.weights[layer] = space.weights[layer] + 1.0
        edited = save_checkpoint(Path(tmp) / "edited.safetensors", ckpt, space)
        before, after = raw_entries(src)[0], raw_entries(edited)[0]
        edited_key = ckpt.layout.layers[layer].weight_key
        assert before.keys() == after.keys()
        for key in before:
            assert after[key][:2] == before[key][:2]
            assert (after[key][2] == before[key][2]) == (key != edited_key), key
        assert after[edited_key][0] == SAFETENSORS_DTYPE[dtype]
