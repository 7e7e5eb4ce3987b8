"""Hostile inputs through the CLI: one-line errors, nothing raw on the terminal, nothing left."""

from __future__ import annotations

from pathlib import Path

import pytest
import safetensors.torch
import torch
from typer.testing import CliRunner

from dwscli.cli.app import app


def good_state() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "0.weight": torch.randn(8, 2, generator=gen),
        "0.bias": torch.randn(8, generator=gen),
        "2.weight": torch.randn(1, 8, generator=gen),
        "2.bias": torch.randn(1, generator=gen),
    }


def write_net(path: Path, metadata: dict[str, str] | None = None) -> Path:
    path.write_bytes(
        safetensors.torch.save(good_state(), metadata=metadata or {"activation": "relu"})
    )
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


# --------------------------------------------------------------------------------------------
# terminal escapes
# --------------------------------------------------------------------------------------------
def test_safe_text_escapes_control_characters() -> None:
    from dwscli.cli.output import safe_text

    assert safe_text("x\x1b[2J.safetensors") == "x\\x1b[2J.safetensors"
    assert safe_text("\x1b]0;title\x07") == "\\x1b]0;title\\x07"
    assert safe_text("a\u202eb") == "a\\u202eb"
    assert safe_text(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\\xe9"
    assert safe_text("plain café, tab\tand newline\n") == "plain café, tab\tand newline\n"


def test_escape_in_file_name_is_not_sent_raw(tmp_path: Path) -> None:
    path = write_net(tmp_path / "x\x1b[2J.safetensors")
    code, output = invoke("inspect", str(path))
    assert code == 0, output
    assert "\x1b" not in output and "x\\x1b[2J.safetensors" in output


def test_escape_in_metadata_is_not_sent_raw(tmp_path: Path) -> None:
    path = write_net(tmp_path / "m.safetensors", {"activation": "relu", "note": "\x1b]0;pwn\x07"})
    code, output = invoke("inspect", str(path))
    assert code == 0, output
    assert "\x1b" not in output and "\x07" not in output
    assert "\\x1b]0;pwn\\x07" in output


def test_escape_in_error_message_is_not_sent_raw(tmp_path: Path) -> None:
    path = tmp_path / "bad\x1b[31m.safetensors"
    path.write_bytes(b"\x00" * 16)
    code, output = invoke("inspect", str(path))
    assert code == 1
    assert "\x1b" not in output and "bad\\x1b[31m.safetensors" in output


def test_json_keeps_the_exact_values(tmp_path: Path) -> None:
    import json

    path = write_net(tmp_path / "m.safetensors", {"activation": "relu", "note": "\x1b]0;pwn\x07"})
    code, output = invoke("inspect", str(path), "--json")
    assert code == 0
    assert json.loads(output)[0]["metadata"]["note"] == "\x1b]0;pwn\x07"
    assert "\x1b" not in output  # JSON escapes control characters itself


# --------------------------------------------------------------------------------------------
# OS errors are the user's, not internal errors
# --------------------------------------------------------------------------------------------
def assert_one_line_error(code: int, output: str, fragment: str) -> None:
    assert code == 1, output
    assert "internal error" not in output and "Traceback" not in output
    lines = [line for line in output.strip().splitlines() if not line.startswith("hint:")]
    assert any(fragment in line for line in lines), output
    assert all(len(line) <= 1100 for line in lines)


def test_out_dir_naming_an_existing_file(tmp_path: Path) -> None:
    (blocker := tmp_path / "blocker").write_text("keep")
    source = tmp_path / "fmnist.safetensors"
    source.write_bytes(Path(example("fmnist-mlp")).read_bytes())
    code, output = invoke("adapt", str(source), "--out-dir", str(blocker))
    assert_one_line_error(code, output, "exists and is not a directory")
    assert blocker.read_text() == "keep"


def test_out_dir_under_proc_or_a_file(tmp_path: Path) -> None:
    (blocker := tmp_path / "blocker").write_text("keep")
    code, output = invoke("adapt", example("fmnist-mlp"), "--out-dir", str(blocker / "sub"))
    assert_one_line_error(code, output, "blocker")
    code, output = invoke("adapt", example("fmnist-mlp"), "--out-dir", "/proc/dws-test/out")
    assert_one_line_error(code, output, "/proc/dws-test/out")


def test_out_dir_is_not_created_when_every_input_is_refused(tmp_path: Path) -> None:
    net = write_net(tmp_path / "small.safetensors")  # does not fit the adapt processor
    out = tmp_path / "never"
    code, _ = invoke("adapt", str(net), "--out-dir", str(out))
    assert code == 1
    assert not out.exists()


def test_very_long_names(tmp_path: Path) -> None:
    long_name = "n" * 5000
    net = write_net(tmp_path / "net.safetensors")
    code, output = invoke("permute", str(net), "-o", str(tmp_path / f"{long_name}.safetensors"))
    assert_one_line_error(code, output, "file name too long")
    code, output = invoke("inspect", str(tmp_path / long_name))
    assert_one_line_error(code, output, "file name too long")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.safetensors"]


def test_symlink_loop_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").symlink_to(tmp_path / "b.safetensors")
    (tmp_path / "b.safetensors").symlink_to(tmp_path / "a.safetensors")
    code, output = invoke("inspect", str(tmp_path / "a.safetensors"))
    assert_one_line_error(code, output, "symlink loop")


def test_permission_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mode-000 directory (simulated: the tests may run as root, who may read anything)."""
    import pathlib

    net = write_net(tmp_path / "net.safetensors")
    real_stat = pathlib.Path.stat

    def refuse(self: pathlib.Path, *args: object, **kwargs: object) -> object:
        if self.name == "net.safetensors":
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "stat", refuse)
    code, output = invoke("inspect", str(net))
    assert_one_line_error(code, output, "permission denied")


def test_unexpected_os_error_is_reported_with_its_file(capsys: pytest.CaptureFixture[str]) -> None:
    from dwscli.cli import errors

    def boom() -> None:
        raise PermissionError(13, "Permission denied", "/some/dir/file")

    assert errors.run_guarded(boom) == 1
    assert capsys.readouterr().err.strip() == "error: /some/dir/file: permission denied"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"0.weight": "meta"}, "meta device"),
        ({1: "tensor"}, "key 1 is a int, not a string"),
    ],
)
def test_odd_torch_files(tmp_path: Path, payload: dict, fragment: str) -> None:
    def value(kind: str) -> torch.Tensor:
        return torch.empty(2, 2, device="meta") if kind == "meta" else torch.ones(2, 2)

    path = tmp_path / "odd.pt"
    torch.save({k: value(v) for k, v in payload.items()}, path)
    code, output = invoke("inspect", str(path))
    assert_one_line_error(code, output, fragment)


def example(name: str) -> str:
    from dwscli.examples import example_path

    return str(example_path(name))


# --------------------------------------------------------------------------------------------
# adapt never drops a predicted bias silently
# --------------------------------------------------------------------------------------------
def bias_free_copy(tmp_path: Path) -> Path:
    state = safetensors.torch.load_file(example("fmnist-mlp"))
    del state["2.bias"]
    path = tmp_path / "nobias.safetensors"
    path.write_bytes(safetensors.torch.save(state, metadata={"activation": "relu"}))
    return path


def test_adapt_refuses_to_drop_a_predicted_bias_library(tmp_path: Path) -> None:
    from dwscli import api
    from dwscli.errors import DwsError

    source = bias_free_copy(tmp_path)
    with pytest.raises(DwsError, match="refusing to drop it"):
        api.adapt(source, out_dir=tmp_path / "out", fail_fast=True)
    assert not (tmp_path / "out").exists()


def test_adapt_refuses_to_drop_a_predicted_bias_cli(tmp_path: Path) -> None:
    source = bias_free_copy(tmp_path)
    before = source.read_bytes()
    code, output = invoke("adapt", str(source), "--out-dir", str(tmp_path / "out"))
    assert code == 1
    assert "has no bias" in output and "refusing to drop it" in output
    assert not (tmp_path / "out").exists()
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nobias.safetensors"]


# --------------------------------------------------------------------------------------------
# non-finite parameters
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metadata", "extra"),
    [
        ({"activation": "sine", "w0": "1e309"}, []),
        ({"activation": "sine", "w0": "nan"}, []),
        ({}, ["--activation", "sine;w0=nan"]),
        ({}, ["-a", "leaky_relu;negative_slope=inf"]),
    ],
)
def test_non_finite_activation_parameters_exit_1(
    tmp_path: Path, metadata: dict[str, str], extra: list[str]
) -> None:
    path = tmp_path / "net.safetensors"
    path.write_bytes(safetensors.torch.save(good_state(), metadata=metadata))
    out = tmp_path / "out.safetensors"
    code, output = invoke("permute", str(path), "-o", str(out), *extra)
    assert_one_line_error(code, output, "must be a finite number")
    assert not out.exists()


def test_render_of_non_finite_w0_exits_1(tmp_path: Path) -> None:
    from safetensors import safe_open

    with safe_open(example("mnist-inr"), "pt") as handle:
        state = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
        metadata = handle.metadata()
    metadata["dws.spec"] = metadata["dws.spec"].replace("w0=30", "w0=1e309")
    source = tmp_path / "inr.safetensors"
    source.write_bytes(safetensors.torch.save(state, metadata=metadata))
    code, output = invoke("render", str(source), "-o", str(tmp_path / "out.png"))
    assert_one_line_error(code, output, "must be a finite number")
    assert not (tmp_path / "out.png").exists()


# --------------------------------------------------------------------------------------------
# outputs: -o a directory, non-UTF-8 names, reproducible bytes, stale temporaries
# --------------------------------------------------------------------------------------------
def test_output_naming_an_existing_directory_is_refused(tmp_path: Path) -> None:
    net = write_net(tmp_path / "net.safetensors")
    (out := tmp_path / "outdir").mkdir()
    code, output = invoke("permute", str(net), "-o", str(out), "--force")
    assert_one_line_error(code, output, "is a directory")
    assert not (tmp_path / "outdir.safetensors").exists()
    assert list(out.iterdir()) == []


def test_non_utf8_input_name_can_be_written(tmp_path: Path) -> None:
    import json
    import os

    from safetensors import safe_open

    name = os.fsdecode(b"caf\xe9.safetensors")
    net = write_net(tmp_path / name)
    out = tmp_path / "out.safetensors"
    result = CliRunner().invoke(app, ["permute", str(net), "-o", str(out), "--seed", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["input"].endswith(name)
    with safe_open(str(out), "pt") as handle:
        assert handle.metadata()["dws.source"] == "caf\\xe9.safetensors"


def test_outputs_are_byte_reproducible(tmp_path: Path) -> None:
    net = write_net(tmp_path / "net.safetensors", {f"k{i}": str(i) for i in range(20)})
    outputs = []
    for i in range(3):
        out = tmp_path / f"out{i}.safetensors"
        code, _ = invoke("permute", str(net), "-o", str(out), "--seed", "5")
        assert code == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    header_len = int.from_bytes(outputs[0][:8], "little")
    keys = list(__import__("json").loads(outputs[0][8 : 8 + header_len])["__metadata__"])
    assert keys == sorted(keys)


def test_permute_judges_preservation_relative_to_output_size(tmp_path: Path) -> None:
    state = good_state()
    state["0.weight"] = state["0.weight"] * 1e30
    state["0.bias"] = state["0.bias"] * 1e30
    net = tmp_path / "huge.safetensors"
    net.write_bytes(safetensors.torch.save(state, metadata={"activation": "relu"}))
    code, output = invoke("permute", str(net), "-o", str(tmp_path / "p.safetensors"), "--seed", "3")
    assert code == 0, output
    assert "function preserved      yes" in output or "function preserved yes" in " ".join(
        output.split()
    )


def test_nonfinite_hint_names_only_commands_that_have_the_option(tmp_path: Path) -> None:
    state = good_state()
    state["0.weight"][0, 0] = float("nan")
    net = tmp_path / "nan.safetensors"
    net.write_bytes(safetensors.torch.save(state, metadata={"activation": "relu"}))
    code, output = invoke("inspect", str(net))
    assert code == 1
    hint = next(line for line in output.splitlines() if line.startswith("hint:"))
    assert "dws inspect and dws permute take --allow-nonfinite" in hint
    code, _ = invoke("inspect", str(net), "--allow-nonfinite")
    assert code == 0


def test_embed_refuses_a_path_with_a_newline_for_npy(tmp_path: Path) -> None:
    source = tmp_path / "bad\nname.safetensors"
    source.write_bytes(Path(example("sine-inr")).read_bytes())
    out = tmp_path / "x.npy"
    code, output = invoke("embed", str(source), "-o", str(out))
    assert code == 1
    assert "line break" in output and "internal error" not in output
    assert not out.exists() and not (tmp_path / "x.paths.txt").exists()


def test_killed_write_leaves_no_temporary_beyond_the_next_run(tmp_path: Path) -> None:
    """A writer killed with SIGKILL mid-write: the next write of that target removes its file."""
    import signal
    import subprocess
    import sys
    import time

    target = tmp_path / "out.safetensors"
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from dwscli.weights.atomic import atomic_path\n"
        "with atomic_path(Path(sys.argv[1])) as tmp:\n"
        "    tmp.write_bytes(b'x' * 100000)\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1
    child.send_signal(signal.SIGKILL)
    child.wait()
    time.sleep(0.05)
    assert leftovers[0].exists()  # nothing could remove it: the process was killed
    net = write_net(tmp_path / "net.safetensors")
    code, _ = invoke("permute", str(net), "-o", str(target), "--seed", "1")
    assert code == 0
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_number_of_input_files_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(3):
        write_net(tmp_path / f"n{i}.safetensors")
    monkeypatch.setenv("DWS_MAX_FILES", "2")
    code, output = invoke("inspect", str(tmp_path))
    assert_one_line_error(code, output, "number of input files 3 exceeds the limit of 2")
    assert "DWS_MAX_FILES" in output
    monkeypatch.setenv("DWS_MAX_FILES", "3")
    assert invoke("inspect", str(tmp_path))[0] == 0
