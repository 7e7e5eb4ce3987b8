"""Blocked and sub-batched forwards (dwscli.nn.streaming) give the plain forward's result."""

from __future__ import annotations

import pytest
import torch

from dwscli.errors import DwsError
from dwscli.nn.models import DWSNetConfig, EquivariantDWSNet, InvariantDWSNet
from dwscli.nn.streaming import BlockedForward, forward_within_memory, plain_forward_peak_bytes
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec
from dwscli.weights.symmetry import apply_permutation, random_permutation

SPECS = ("5-7-6-3:relu", "3-9-8-7-2:relu")
TINY_BUDGET = 1  # forces one-row blocks


def _model(kind: str, spec: MLPSpec, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    config = DWSNetConfig(hidden_channels=4, num_layers=3, output_init_scale=1.0, **options)
    cls = InvariantDWSNet if kind == "invariant" else EquivariantDWSNet
    model = cls(spec, config).double().eval()
    with torch.no_grad():  # non-zero biases and normaliser so every term is exercised
        for layer in [m for m in model.modules() if hasattr(m, "biases")]:
            for b in layer.biases:
                b.normal_()
        model.normalizer.mean.normal_()
        model.normalizer.std.uniform_(0.5, 2.0)
        mixing = getattr(model, "input_mixing", None)
        if mixing is not None:  # zero-initialised: make its maps and read-outs matter
            mixing.mix.normal_()
            mixing.to_bias.normal_()
    return model


def _space(spec: MLPSpec, batch: int = 1, seed: int = 1) -> WeightSpace:
    return WeightSpace.random(spec, batch, generator=torch.Generator().manual_seed(seed)).to(
        torch.float64
    )


def _max_diff(a, b) -> float:
    if isinstance(a, torch.Tensor):
        return float((a - b).abs().max())
    return max(float((x - y).abs().max()) for x, y in zip(a.tensors(), b.tensors()))


@pytest.mark.parametrize("spec_text", SPECS)
@pytest.mark.parametrize("mixing", ["shared", "full"])
@pytest.mark.parametrize(
    "options",
    [{}, {"norm": True}, {"pooling": "mean+max"}, {"probes": 4, "probe_features": 3}],
)
def test_blocked_invariant_matches_plain(spec_text: str, mixing: str, options: dict) -> None:
    spec = MLPSpec.parse(spec_text)
    model = _model("invariant", spec, fixed_mixing=mixing, **options)
    space = _space(spec)
    with torch.no_grad():
        plain = model(space)
    blocked = BlockedForward(model, space, TINY_BUDGET).run()
    assert blocked.shape == plain.shape
    assert _max_diff(blocked, plain) < 1e-10


@pytest.mark.parametrize("spec_text", SPECS)
@pytest.mark.parametrize("mixing", ["shared", "full"])
@pytest.mark.parametrize(
    "options",
    [{}, {"norm": True}, {"residual": False}, {"input_mixing": 2}, {"edit_layers": [1, 3]}],
)
def test_blocked_equivariant_matches_plain(spec_text: str, mixing: str, options: dict) -> None:
    spec = MLPSpec.parse(spec_text)
    model = _model("equivariant", spec, fixed_mixing=mixing, **options)
    space = _space(spec)
    with torch.no_grad():
        plain = model(space)
    blocked = BlockedForward(model, space, TINY_BUDGET).run()
    assert _max_diff(blocked, plain) < 1e-10


def test_blocked_equivariant_is_equivariant() -> None:
    spec = MLPSpec.parse(SPECS[1])
    model = _model("equivariant", spec, fixed_mixing="shared")
    space = _space(spec)
    perm = random_permutation(space, generator=torch.Generator().manual_seed(3))
    out = BlockedForward(model, space, TINY_BUDGET).run()
    out_perm = BlockedForward(model, apply_permutation(space, perm), TINY_BUDGET).run()
    assert _max_diff(out_perm, apply_permutation(out, perm)) < 1e-10


def test_forward_within_memory_splits_batches_and_blocks_wide_nets() -> None:
    spec = MLPSpec.parse(SPECS[0])
    space = _space(spec, batch=5)
    for kind in ("invariant", "equivariant"):
        model = _model(kind, spec, fixed_mixing="shared")
        with torch.no_grad():
            plain = model(space)
            per_net = plain_forward_peak_bytes(model, space) // 5
            by_size = forward_within_memory(
                model, space, budget_bytes=2 * per_net, batch_budget_bytes=2 * per_net
            )
            blocked = forward_within_memory(
                model, space, budget_bytes=per_net // 2, batch_budget_bytes=per_net // 2
            )
        assert _max_diff(by_size, plain) < 1e-12  # sub-batches: the same maps per net
        assert _max_diff(blocked, plain) < 1e-10


def test_a_cpu_batch_runs_in_cache_sized_sub_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an explicit batch budget, a CPU batch larger than the per-thread cache budget
    runs in sub-batches of about that size, with the whole batch's result; a single net and a
    batch within the budget run in one call."""
    from dwscli.nn import streaming

    spec = MLPSpec.parse(SPECS[1])
    space = _space(spec, batch=10)
    model = _model("equivariant", spec, fixed_mixing="shared")
    per_net = plain_forward_peak_bytes(model, space) // 10
    monkeypatch.setattr(streaming, "CPU_BATCH_BYTES_PER_THREAD", 3 * per_net)
    calls: list[int] = []
    model.register_forward_pre_hook(lambda _, args: calls.append(args[0].batch_size))
    with torch.no_grad():
        plain = model(space)
        calls.clear()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            split = forward_within_memory(model, space)
            split_calls, calls[:] = list(calls), []
            forward_within_memory(model, _space(spec, batch=1))
            forward_within_memory(model, _space(spec, batch=3))
        finally:
            torch.set_num_threads(threads)
    assert split_calls == [3, 3, 3, 1]
    assert calls == [1, 3]
    assert _max_diff(split, plain) < 1e-12


def test_a_single_net_over_the_cpu_batch_budget_runs_plainly_and_the_budget_is_capped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One net whose features exceed the CPU sub-batch budget but not the per-net budget is
    the model's own input, not a slice of it; the per-thread budget never exceeds the batch
    budget, whatever the thread count."""
    from dwscli.nn import streaming

    spec = MLPSpec.parse(SPECS[1])
    single = _space(spec, batch=1)
    model = _model("invariant", spec, fixed_mixing="shared")
    per_net = plain_forward_peak_bytes(model, single)
    monkeypatch.setattr(streaming, "CPU_BATCH_BYTES_PER_THREAD", per_net // 4)
    inputs: list[WeightSpace] = []
    model.register_forward_pre_hook(lambda _, args: inputs.append(args[0]))
    with torch.no_grad():
        forward_within_memory(model, single, budget_bytes=2 * per_net)
    assert len(inputs) == 1 and inputs[0] is single
    monkeypatch.setattr(streaming, "CPU_BATCH_BYTES_PER_THREAD", 10**12)
    assert streaming.cpu_batch_bytes() == streaming.BATCH_BUDGET_BYTES


def _over_budget_calls(model: torch.nn.Module, space: WeightSpace) -> list[int]:
    """The batch sizes ``model`` is called with by a plain forward and then by
    ``forward_within_memory`` under a budget nothing fits; checks both give the same result."""
    calls: list[int] = []
    model.register_forward_pre_hook(lambda _, args: calls.append(args[0].batch_size))
    with torch.no_grad():
        plain = model(space)
        limited = forward_within_memory(model, space, budget_bytes=1, batch_budget_bytes=1)
    assert _max_diff(limited, plain) < 1e-10
    return calls


def test_forward_within_memory_blocks_a_model_with_input_unit_mixing() -> None:
    """A processor with input-unit mixing runs a net over the budget by row blocks (not the
    plain forward), with the plain forward's result."""
    spec = MLPSpec.parse(SPECS[0])
    model = _model("equivariant", spec, fixed_mixing="shared", input_mixing=2)
    # only the plain call: the blocked path does not call the model
    assert _over_budget_calls(model, _space(spec, batch=2)) == [2]


@pytest.mark.parametrize("kind", ["invariant", "equivariant"])
def test_a_model_with_input_templates_runs_plainly_net_by_net(kind: str) -> None:
    """The blocked forward does not know input templates: over the budget such a model runs
    one net at a time through its own forward, with the batch forward's result."""
    spec = MLPSpec.parse(SPECS[0])
    model = _model(kind, spec, fixed_mixing="shared", input_templates=2)
    assert _over_budget_calls(model, _space(spec, batch=3)) == [3, 1, 1, 1]
    with pytest.raises(DwsError, match="does not implement input templates"):
        BlockedForward(model, _space(spec), TINY_BUDGET)


@pytest.mark.parametrize("kind", ["invariant", "equivariant"])
def test_blocked_forward_hands_freed_heap_back_after_every_block(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each row block's temporaries go back to the kernel before the next block is computed
    (a fragmented heap otherwise kept 100-200 MiB of freed blocks resident on a 784-wide net,
    varying from run to run), and the result is unchanged."""
    from dwscli.nn import streaming

    spec = MLPSpec.parse(SPECS[1])
    options = {"pooling": "mean+max"} if kind == "invariant" else {"input_mixing": 2}
    model = _model(kind, spec, fixed_mixing="shared", **options)
    space = _space(spec)
    with torch.no_grad():
        plain = model(space)
    forward = BlockedForward(model, space, TINY_BUDGET)
    rows_of_big_tensors = sum(x.shape[1] for x, big in zip(forward.inputs, forward.big) if big)
    releases: list[int] = []
    monkeypatch.setattr(streaming, "release_free_heap", lambda: releases.append(1) or True)
    blocked = forward.run()
    assert _max_diff(blocked, plain) < 1e-10
    # one-row blocks; a pass per layer: statistics after each (the equivariant model's last
    # pass writes the output instead)
    assert len(releases) == len(forward.layers) * rows_of_big_tensors


def test_release_free_heap_returns_freed_heap_pages_on_glibc() -> None:
    """On glibc the release works: freed memory in the middle of the heap leaves the process's
    resident set (the effect the blocked forward relies on)."""
    import ctypes
    import platform

    from dwscli.nn.heap import release_free_heap

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")

    def resident_kib() -> int:
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmRSS:"))
        return int(line.split()[1])

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    # 64 KiB chunks stay below the mmap threshold: heap memory; every other one stays
    # allocated, so the freed ones are holes that trimming the heap's top cannot return
    chunks = [libc.malloc(64 * 1024) for _ in range(1024)]
    for chunk in chunks:
        libc.memset(chunk, 1, 64 * 1024)
    for chunk in chunks[::2]:
        libc.free(chunk)
    before = resident_kib()
    assert release_free_heap()
    after = resident_kib()
    for chunk in chunks[1::2]:
        libc.free(chunk)
    assert before - after > 16 * 1024  # of the 32 MiB of holes, most went back


def test_a_single_blocked_net_is_not_copied_into_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The blocked forward's output for one net is returned as it is: joining a batch of one
    copied a wide net's whole output at the end of the forward, where the peak was."""
    spec = MLPSpec.parse(SPECS[0])
    model = _model("equivariant", spec, fixed_mixing="shared", input_mixing=2)
    space = _space(spec)
    with torch.no_grad():
        plain = model(space)

    def no_join(*_args, **_kwargs):
        raise AssertionError("a single net's output was joined into a batch")

    monkeypatch.setattr(WeightSpace, "stack", no_join)
    with torch.no_grad():
        blocked = forward_within_memory(model, space, budget_bytes=1, batch_budget_bytes=1)
    assert _max_diff(blocked, plain) < 1e-10
