"""Fuzzing INR metadata: grids, ranges and scales as any string, rendered through the CLI."""

from __future__ import annotations

from pathlib import Path

import safetensors.torch
from fuzz_contract import check_contract  # type: ignore[import-not-found]
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

from dwscli.examples import example_path

NUMBERS = st.sampled_from(
    ["0", "-3", "1", "28", "1e309", "nan", "inf", "-inf", "1e-300", "100000", "2.5", "", "x"]
)
GRIDS = st.one_of(
    st.builds(lambda a, b: f"{a}x{b}", NUMBERS, NUMBERS),
    st.builds(lambda a, b: f"{a}x{b}", st.integers(-5, 5000), st.integers(-5, 5000)),
    st.text(max_size=12),
)
PAIRS = st.one_of(st.builds(lambda a, b: f"{a},{b}", NUMBERS, NUMBERS), st.text(max_size=8))

with safe_open(str(example_path("mnist-inr")), "pt") as _handle:
    STATE = {key: _handle.get_tensor(key) for key in _handle.keys()}  # noqa: SIM118
    METADATA = _handle.metadata()


@settings(settings.get_profile("dws-fuzz"))
@given(
    grid=st.one_of(st.none(), GRIDS),
    coord_range=st.one_of(st.none(), PAIRS),
    scale=st.one_of(st.none(), NUMBERS),
    offset=st.one_of(st.none(), NUMBERS),
    w0=st.one_of(st.none(), NUMBERS),
)
def test_generated_inr_metadata_renders_or_is_refused(
    grid: str | None,
    coord_range: str | None,
    scale: str | None,
    offset: str | None,
    w0: str | None,
    fresh_dir,
) -> None:
    directory: Path = fresh_dir()
    metadata = dict(METADATA)
    for key, value in {
        "inr.grid": grid,
        "inr.coord_range": coord_range,
        "inr.output_scale": scale,
        "inr.output_offset": offset,
    }.items():
        if value is not None:
            metadata[key] = value
    if w0 is not None:
        metadata["dws.spec"] = metadata["dws.spec"].replace("w0=30", f"w0={w0}")
    source = directory / "inr.safetensors"
    source.write_bytes(safetensors.torch.save(STATE, metadata=metadata))
    out = directory / "out.png"
    outcome = check_contract(
        ["render", str(source), "-o", str(out)], directory, [source], [out], label="render INR"
    )
    if outcome.code == 0:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        out.unlink()
