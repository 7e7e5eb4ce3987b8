"""Fuzzing safetensors files: generated headers and bodies, and mutations of a valid file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import safetensors.torch
import torch
from fuzz_contract import check_contract  # type: ignore[import-not-found]
from hypothesis import given, settings
from hypothesis import strategies as st

from dwscli.errors import DwsError
from dwscli.weights.checkpoint import load_checkpoint

DTYPES = ["F32", "F64", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "XX", ""]
SIZES = {"F32": 4, "F64": 8, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1, "F8_E4M3": 1}
KEYS = ["0.weight", "0.bias", "2.weight", "2.bias", "fc1.weight", "bn.running_mean", "x", ""]
METADATA_VALUES = st.one_of(
    st.sampled_from(["relu", "sine", "sine;w0=nan", "siren", "2-3-1:relu", "28x28", "-1,1"]),
    st.text(max_size=20),
)


@st.composite
def tensor_entries(draw: st.DrawFn) -> tuple[dict, bytes]:
    """A header whose entries are mostly consistent, sometimes not, and a matching body."""
    header: dict = {}
    body = b""
    for key in draw(st.lists(st.sampled_from(KEYS), min_size=0, max_size=5, unique=True)):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=3))
        size = SIZES.get(dtype, 4)
        count = 1
        for s in shape:
            count *= s
        length = count * size + draw(st.sampled_from([0, 0, 0, 1, -1]))
        length = max(length, 0)
        begin = len(body) + draw(st.sampled_from([0, 0, 0, 4, -4]))
        begin = max(begin, 0)
        data = draw(st.binary(min_size=length, max_size=length))
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [begin, begin + length]}
        body += data
    if draw(st.booleans()):
        header["__metadata__"] = draw(
            st.dictionaries(
                st.sampled_from(["activation", "dws.spec", "w0", "inr.grid", "note", "\x1b]0;"]),
                METADATA_VALUES,
                max_size=3,
            )
        )
    body += draw(st.sampled_from([b"", b"", b"\x00" * 3]))
    return header, body


def raw_file(header: object, body: bytes) -> bytes:
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return len(text).to_bytes(8, "little") + text + body


def valid_file() -> bytes:
    gen = torch.Generator().manual_seed(0)
    state = {
        "0.weight": torch.randn(4, 2, generator=gen),
        "0.bias": torch.randn(4, generator=gen),
        "2.weight": torch.randn(1, 4, generator=gen),
        "2.bias": torch.randn(1, generator=gen),
    }
    return safetensors.torch.save(state, metadata={"activation": "relu"})


MUTATIONS: dict[str, Callable[[bytes, int, int], bytes]] = {
    "flip": lambda d, i, v: d[:i] + bytes([d[i] ^ (1 + v % 255)]) + d[i + 1 :],
    "truncate": lambda d, i, v: d[:i],
    "extend": lambda d, i, v: d + bytes(v % 64),
    "length": lambda d, i, v: (v * 7919).to_bytes(8, "little") + d[8:],
    "insert": lambda d, i, v: d[:i] + bytes([v % 256]) * (1 + v % 5) + d[i:],
}


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    data = valid_file()
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(MUTATIONS)))
        index = draw(st.integers(0, max(len(data) - 1, 0)))
        value = draw(st.integers(0, 2**20))
        data = MUTATIONS[name](data, min(index, max(len(data) - 1, 0)), value) if data else data
    return data


def exercise(content: bytes, directory: Path) -> None:
    source = directory / "input.safetensors"
    source.write_bytes(content)
    try:  # library: a DwsError or a loaded checkpoint, nothing else
        load_checkpoint(source)
    except DwsError as error:
        assert "\n" not in error.message
    check_contract(["inspect", str(source)], directory, [source], label="inspect safetensors")
    out = directory / "out.safetensors"
    outcome = check_contract(
        ["permute", str(source), "-o", str(out), "--seed", "0"],
        directory,
        [source],
        [out],
        label="permute safetensors",
    )
    if outcome.code == 0:
        load_checkpoint(out)  # what dws writes, dws reads
        out.unlink()


@settings(settings.get_profile("dws-fuzz"))
@given(case=tensor_entries())
def test_generated_headers_and_bodies(case: tuple[dict, bytes], fresh_dir) -> None:
    exercise(raw_file(*case), fresh_dir())


@settings(settings.get_profile("dws-fuzz"))
@given(content=mutated_files())
def test_mutated_valid_files(content: bytes, fresh_dir) -> None:
    exercise(content, fresh_dir())


@settings(settings.get_profile("dws-fuzz"))
@given(header=st.binary(max_size=300), body=st.binary(max_size=64))
def test_arbitrary_header_bytes(header: bytes, body: bytes, fresh_dir) -> None:
    exercise(raw_file(header, body), fresh_dir())
