"""Bad inputs: every one is a one-line DwsError that names the file, and nothing is written."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from dwscli.errors import DwsError
from dwscli.weights.checkpoint import load_checkpoint


def _good_bytes() -> bytes:
    gen = torch.Generator().manual_seed(0)
    state = {
        "0.weight": torch.randn(8, 2, generator=gen),
        "0.bias": torch.randn(8, generator=gen),
        "2.weight": torch.randn(1, 8, generator=gen),
        "2.bias": torch.randn(1, generator=gen),
    }
    return safetensors.torch.save(state, metadata={"activation": "relu"})


def _raw_safetensors(header: dict, data: bytes) -> bytes:
    """A safetensors file built by hand, so that the header can say anything."""
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


# Each maker writes a bad input under the given directory and returns its path, plus a fragment
# the message must contain besides the file name.
def truncated_in_data(d: Path) -> tuple[Path, str]:
    data = _good_bytes()
    (p := d / "cut.safetensors").write_bytes(data[: len(data) - 10])
    return p, "truncated"


def truncated_in_header(d: Path) -> tuple[Path, str]:
    data = _good_bytes()
    (p := d / "cut_header.safetensors").write_bytes(data[:40])
    return p, "header claims"


def truncated_in_length(d: Path) -> tuple[Path, str]:
    (p := d / "tiny.safetensors").write_bytes(_good_bytes()[:5])
    return p, "too short"


def header_claims_more_than_file(d: Path) -> tuple[Path, str]:
    data = bytearray(_good_bytes())
    data[:8] = (len(data) * 4).to_bytes(8, "little")
    (p := d / "liar.safetensors").write_bytes(bytes(data))
    return p, f"header claims {len(data) * 4} bytes"


def offsets_beyond_file(d: Path) -> tuple[Path, str]:
    header = {
        "0.weight": {"dtype": "F32", "shape": [4, 2], "data_offsets": [0, 32]},
        "0.bias": {"dtype": "F32", "shape": [4], "data_offsets": [32, 48]},
    }
    (p := d / "offsets.safetensors").write_bytes(_raw_safetensors(header, b"\0" * 40))
    return p, "'0.bias' occupies data bytes 32..48"


def offsets_inconsistent_with_shape(d: Path) -> tuple[Path, str]:
    # within the file, but 12 bytes cannot hold a 2x2 float32 tensor: safetensors' own check
    header = {"0.weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}
    (p := d / "inconsistent.safetensors").write_bytes(_raw_safetensors(header, b"\0" * 12))
    return p, "not a valid safetensors file"


def header_not_json(d: Path) -> tuple[Path, str]:
    text = b"\x01\x02 not json at all\xff"
    (p := d / "garbled.safetensors").write_bytes(len(text).to_bytes(8, "little") + text)
    return p, "not valid JSON"


def text_file(d: Path) -> tuple[Path, str]:
    (p := d / "notes.safetensors").write_text("these are my notes, not a checkpoint\n" * 20)
    return p, "text file"


def short_text_file(d: Path) -> tuple[Path, str]:
    (p := d / "hi.pt").write_text("hi\n")
    return p, "text file"


def empty_file(d: Path) -> tuple[Path, str]:
    (p := d / "empty.safetensors").write_bytes(b"")
    return p, "empty"


def directory(d: Path) -> tuple[Path, str]:
    (p := d / "folder.safetensors").mkdir()
    return p, "directory"


def missing_path(d: Path) -> tuple[Path, str]:
    return d / "nowhere.safetensors", "no such file"


def conv_kernel(d: Path) -> tuple[Path, str]:
    state = {
        "conv.weight": torch.randn(8, 1, 3, 3),
        "conv.bias": torch.randn(8),
        "fc.weight": torch.randn(10, 8),
    }
    safetensors.torch.save_file(state, str(p := d / "cnn.safetensors"))
    return p, "tensor 'conv.weight' has shape (8, 1, 3, 3); dws reads MLPs (2-D linear weights)"


def not_chaining(d: Path) -> tuple[Path, str]:
    state = {
        "0.weight": torch.randn(8, 2),
        "0.bias": torch.randn(8),
        "2.weight": torch.randn(1, 7),
        "2.bias": torch.randn(1),
    }
    safetensors.torch.save_file(state, str(p := d / "chain.safetensors"))
    return (
        p,
        "'0.weight' has shape (8, 2) (8 outputs) but the next layer '2.weight' has shape (1, 7)",
    )


def bias_shape_wrong(d: Path) -> tuple[Path, str]:
    state = {"0.weight": torch.randn(8, 2), "0.bias": torch.randn(5)}
    safetensors.torch.save_file(state, str(p := d / "bias.safetensors"))
    return p, "bias '0.bias' has shape (5,) but weight '0.weight' has shape (8, 2)"


def bias_without_weight(d: Path) -> tuple[Path, str]:
    state = {"0.weight": torch.randn(8, 2), "0.bias": torch.randn(8), "1.bias": torch.randn(3)}
    safetensors.torch.save_file(state, str(p := d / "orphan.safetensors"))
    return p, "bias '1.bias' has no weight"


def nan_weights(d: Path) -> tuple[Path, str]:
    w = torch.randn(8, 2)
    w[1, 1] = w[3, 0] = float("nan")
    state = {"0.weight": w, "0.bias": torch.randn(8)}
    safetensors.torch.save_file(state, str(p := d / "nan.safetensors"))
    return p, "tensor '0.weight' has 2 NaN and 0 Inf values"


def inf_weights(d: Path) -> tuple[Path, str]:
    b = torch.randn(8, dtype=torch.float16)
    b[0], b[5], b[6] = float("inf"), float("-inf"), float("nan")
    state = {"0.weight": torch.randn(8, 2, dtype=torch.float16), "0.bias": b}
    safetensors.torch.save_file(state, str(p := d / "inf.safetensors"))
    return p, "tensor '0.bias' has 1 NaN and 2 Inf values"


def batchnorm_keys(d: Path) -> tuple[Path, str]:
    model = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 1))
    safetensors.torch.save_file(model.state_dict(), str(p := d / "bn.safetensors"))
    return p, "'1.num_batches_tracked' is not a linear-layer weight or bias (a BatchNorm"


def layernorm(d: Path) -> tuple[Path, str]:
    model = nn.Sequential(nn.Linear(2, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    safetensors.torch.save_file(model.state_dict(), str(p := d / "ln.safetensors"))
    return p, "tensor '1.weight' has shape (8,)"


def integer_weights(d: Path) -> tuple[Path, str]:
    state = {"0.weight": torch.randint(0, 9, (4, 2), dtype=torch.int8)}
    safetensors.torch.save_file(state, str(p := d / "int8.safetensors"))
    return p, "dtype int8"


def no_tensors(d: Path) -> tuple[Path, str]:
    (p := d / "nothing.safetensors").write_bytes(safetensors.torch.save({}))
    return p, "no linear layers"


def random_binary(d: Path) -> tuple[Path, str]:
    gen = torch.Generator().manual_seed(1)
    data = bytes(torch.randint(0, 256, (4096,), generator=gen, dtype=torch.uint8).tolist())
    (p := d / "noise.safetensors").write_bytes(data)
    return p, "header claims"


def corrupt_pt(d: Path) -> tuple[Path, str]:
    torch.save({"0.weight": torch.randn(4, 2)}, d / "full.pt")
    data = (d / "full.pt").read_bytes()
    (d / "full.pt").unlink()
    (p := d / "cut.pt").write_bytes(data[: len(data) // 2])
    return p, "not a readable torch checkpoint (PytorchStreamReader failed reading zip archive"


def torch_zip_named_safetensors(d: Path) -> tuple[Path, str]:
    torch.save({"0.weight": torch.randn(4, 2)}, p := d / "model.safetensors")
    return p, "torch.save (zip) file, not safetensors"


def pt_with_non_tensor(d: Path) -> tuple[Path, str]:
    torch.save({"0.weight": torch.randn(4, 2), "lr": 0.1}, p := d / "mixed.pt")
    return p, "entry 'lr' is a float, not a tensor"


def pt_conv(d: Path) -> tuple[Path, str]:
    torch.save(nn.Conv2d(1, 4, 3).state_dict(), p := d / "conv.pth")
    return p, "tensor 'weight' has shape (4, 1, 3, 3)"


def spec_metadata_garbled(d: Path) -> tuple[Path, str]:
    state = {"0.weight": torch.randn(4, 2), "0.bias": torch.randn(4)}
    meta = {"dws.spec": "two-four:relu"}
    safetensors.torch.save_file(state, str(p := d / "meta.safetensors"), metadata=meta)
    return p, "cannot read MLP spec"


def unknown_activation_metadata(d: Path) -> tuple[Path, str]:
    state = {"0.weight": torch.randn(4, 2), "0.bias": torch.randn(4)}
    meta = {"activation": "swish9000"}
    safetensors.torch.save_file(state, str(p := d / "act.safetensors"), metadata=meta)
    return p, "unknown activation 'swish9000'"


CASES: list[Callable[[Path], tuple[Path, str]]] = [
    truncated_in_data,
    truncated_in_header,
    truncated_in_length,
    header_claims_more_than_file,
    offsets_beyond_file,
    offsets_inconsistent_with_shape,
    header_not_json,
    text_file,
    short_text_file,
    empty_file,
    directory,
    missing_path,
    conv_kernel,
    not_chaining,
    bias_shape_wrong,
    bias_without_weight,
    nan_weights,
    inf_weights,
    batchnorm_keys,
    layernorm,
    integer_weights,
    no_tensors,
    random_binary,
    corrupt_pt,
    torch_zip_named_safetensors,
    pt_with_non_tensor,
    pt_conv,
    spec_metadata_garbled,
    unknown_activation_metadata,
]


def _listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


@pytest.mark.parametrize("make", CASES, ids=lambda f: f.__name__)
def test_bad_input_is_one_line_error_naming_the_file(tmp_path, make):
    path, fragment = make(tmp_path)
    before = _listing(tmp_path)
    with pytest.raises(DwsError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert path.name in message
    assert fragment in message
    assert "\n" not in message and "Traceback" not in message
    assert info.value.exit_code == 1
    assert _listing(tmp_path) == before  # nothing written, not even a temporary file


def test_nonfinite_weights_load_when_allowed(tmp_path):
    path, _ = nan_weights(tmp_path)
    ckpt = load_checkpoint(path, allow_nonfinite=True)
    assert int(torch.isnan(ckpt.space.weights[0]).sum()) == 2
    path, _ = inf_weights(tmp_path)
    ckpt = load_checkpoint(path, allow_nonfinite=True)
    assert int(torch.isinf(ckpt.space.biases[0]).sum()) == 2


def test_nonfinite_error_says_how_to_allow_it(tmp_path):
    path, _ = nan_weights(tmp_path)
    with pytest.raises(DwsError, match="--allow-nonfinite"):
        load_checkpoint(path)


# -- the same bad inputs through the command line ---------------------------------------------


@pytest.mark.parametrize("make", CASES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("command", ["inspect", "permute"])
def test_bad_input_through_the_cli(tmp_path, make, command, capfd):
    from dwscli.cli.app import main

    path, fragment = make(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    output = out_dir / "result.safetensors"
    args = [command, str(path)] + (["-o", str(output)] if command == "permute" else [])
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capfd.readouterr()
    assert exit_info.value.code == 1
    error_lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, captured.err
    assert path.name in error_lines[0] and fragment in error_lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert list(out_dir.iterdir()) == []  # no output, not even a temporary file


def test_cli_allow_nonfinite_flag(tmp_path, capfd):
    from dwscli.cli.app import main

    path, _ = nan_weights(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", "--allow-nonfinite", "--json", str(path)])
    assert exit_info.value.code == 0
    assert path.name in capfd.readouterr().out
