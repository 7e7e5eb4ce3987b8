"""Running a DWSNet within a memory budget: by sub-batches, and on wide nets by row blocks.

A DWS layer's output at an entry (i, j) of a weight matrix is a channel map of the input at
(i, j) plus terms built from pooled statistics (row, column and total means of every tensor).
The statistics are small (a width times the channels); only the full feature tensors of the
hidden-to-hidden weight matrices are large (d² × channels: a 4096×4096 layer with 16 channels is
1 GiB). So a trunk can run without ever holding such a tensor: pass k recomputes layers 1..k on
one block of rows at a time from the input, using the statistics stored by the earlier passes,
and accumulates the statistics of layer k's output. L layers cost L(L+1)/2 block-layer
evaluations instead of L, and memory is one block plus the statistics.

Results equal the plain forward up to float rounding (means are summed in another order);
:func:`forward_within_memory` uses the blocked path only when the plain one would not fit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from dwscli.errors import DwsError
from dwscli.nn.fused import _broadcast_shape
from dwscli.nn.heap import release_free_heap
from dwscli.nn.layers import DWSLayer, _pool
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

#: Feature memory (bytes) that one net's plain forward may use before it runs by row blocks.
DEFAULT_BUDGET_BYTES = 256 * 1024**2
#: Feature memory (bytes) that a batch's plain forward may use before it is split by size, on
#: a GPU and as the cap of the CPU budget below.
BATCH_BUDGET_BYTES = 1024**3
#: On CPU a batch runs in sub-batches whose features take about this much per thread: small
#: sub-batches, whose temporaries are reused while still in cache, are faster than one large
#: batch, whose elementwise passes stream from memory. Measured on 196-32-32-10 nets with the
#: shipped 16-channel accuracy predictor, 2 threads: 0.99 ms a net in sub-batches of 32 (about
#: 63 MiB) vs 2.25 ms in one batch of 1,024; on 2-32-32-1 INRs with a 32-channel classifier,
#: 0.53 vs 1.02 ms (sub-batches of 64).
CPU_BATCH_BYTES_PER_THREAD = 32 * 1024**2
#: A blocked forward's row block holds about this share of the net's own size in features
#: (its matmul output, activation and residual temporaries come on top, about 4 blocks in all),
#: and at least _MIN_BLOCK_BYTES (fewer, larger operations on narrower nets). Blocks below
#: glibc's mmap threshold live in the heap, and freed ones would stay resident in its fragments
#: (the peak then grew pass after pass): the heap's free pages go back to the kernel after
#: every block (see dwscli.nn.heap). Smaller blocks cost no measurable time: on a
#: 784-2048-2048-2048-10 net, blocks of a quarter of the net (9.5 MiB) took less CPU time than
#: blocks of 34 MiB, and peaked about 80 MiB lower.
_BLOCK_SHARE_OF_NET = 0.25
_MIN_BLOCK_BYTES = 8 * 1024**2
_FLOAT_BYTES = 4


def feature_bytes(model: nn.Module, space: WeightSpace) -> int:
    """Bytes of one full set of the trunk's features for ``space`` (all tensors, widest
    layer), in the processing dtype: what one activation of the plain forward holds."""
    channels = max((m.out_channels for m in model.modules() if isinstance(m, DWSLayer)), default=1)
    entries = sum(w[0].numel() for w in space.weights) + sum(b[0].numel() for b in space.biases)
    return space.batch_size * entries * channels * space.weights[0].element_size()


def solve_bytes_per_net(model: nn.Module, spec: MLPSpec) -> int:
    """What an editor's closed-form output layer adds per net (0 without one)."""
    solve = getattr(model, "output_solve", None)
    return 0 if solve is None else solve.bytes_per_net(spec)


def plain_forward_peak_bytes(model: nn.Module, space: WeightSpace) -> int:
    """Estimate of the plain forward's peak: about four live feature sets (input, layer
    output, residual sum, the pooled copies and matmul temporaries), and the output solve's
    renderings and design matrices."""
    solve = space.batch_size * solve_bytes_per_net(model, space.spec)
    return 4 * feature_bytes(model, space) + solve


def memory_needed_bytes(model: nn.Module, spec: MLPSpec) -> int:
    """Peak memory to run ``model`` on one net of ``spec`` with :func:`forward_within_memory`:
    the feature budget (or less, when the plain forward fits in it) plus about eight float32
    copies of the net (the file's tensors, the batch, normalised input, output, written copy)."""
    space_bytes = spec.num_parameters * _FLOAT_BYTES
    channels = max((m.out_channels for m in model.modules() if isinstance(m, DWSLayer)), default=1)
    plain = 4 * spec.num_parameters * channels * _FLOAT_BYTES
    trunk = min(plain, DEFAULT_BUDGET_BYTES) if blockable(model) else plain
    return 8 * space_bytes + trunk + solve_bytes_per_net(model, spec)


def available_memory_bytes() -> int | None:
    """Memory this process may still use: ``DWS_MEMORY_LIMIT`` (bytes, or with a K/M/G
    suffix) when set, else the smaller of the kernel's MemAvailable and the cgroup's limit
    minus its usage; None when unknown (not Linux)."""
    text = os.environ.get("DWS_MEMORY_LIMIT")
    if text:
        units = {"K": 1024, "M": 1024**2, "G": 1024**3}
        scale = units.get(text[-1].upper(), 1)
        try:
            return int(float(text[:-1] if scale > 1 else text) * scale)
        except ValueError as error:
            raise DwsError(
                f"DWS_MEMORY_LIMIT={text!r} is not a size", hint="e.g. 4G, 512M or 1000000"
            ) from error
    limits = []
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as limit_file:
            limit = limit_file.read().strip()
        with open("/sys/fs/cgroup/memory.current") as usage_file:
            usage = int(usage_file.read().strip())
        if limit != "max":
            limits.append(int(limit) - usage)
    except (OSError, ValueError):
        pass
    return min(limits) if limits else None


def check_memory(path: Path, model: nn.Module, spec: MLPSpec) -> None:
    """Refuse, before any large allocation, a net whose processing would not fit in memory:
    a one-line error instead of the kernel killing the process."""
    available = available_memory_bytes()
    if available is None or not isinstance(model, nn.Module):
        return
    _refuse_beyond(path, spec, memory_needed_bytes(model, spec), available)


def _refuse_beyond(path: Path, spec: MLPSpec, needed: int, available: int) -> None:
    if needed > available:
        raise DwsError(
            f"{path}: a {spec} network needs about {needed / 1024**2:,.0f} MiB to process, "
            f"but only {max(available, 0) / 1024**2:,.0f} MiB of memory is available",
            hint="free memory, or process it on a machine with more",
        )


class MemoryGuard:
    """:func:`check_memory` for a run over many files, at a fraction of its cost per file.

    Working out a model's need walks its modules, and reading the memory left opens two or
    three system files: together most of the time it takes to read a small checkpoint. So the
    need of each (model, spec) is worked out once, and the memory left is read again every
    ``refresh`` checks, and whenever a net would take more than half of what was left.
    """

    def __init__(self, refresh: int = 64) -> None:
        self.refresh = refresh
        self._needed: dict[tuple[nn.Module, MLPSpec], int] = {}  # modules hash by identity
        self._available: int | None = None
        self._checks = 0

    def check(self, path: Path, model: nn.Module, spec: MLPSpec) -> None:
        """Refuse (one line) a net that would not fit; a net that passes is taken to stay in
        memory (the caller keeps what it read), so what it holds counts as used until the
        memory left is read again."""
        if not isinstance(model, nn.Module):
            return
        key = (model, spec)
        needed = self._needed.get(key)
        if needed is None:
            needed = self._needed[key] = memory_needed_bytes(model, spec)
        stale = self._checks % self.refresh == 0
        if stale or (self._available is not None and 2 * needed > self._available):
            self._available = available_memory_bytes()
        self._checks += 1
        if self._available is not None:
            _refuse_beyond(path, spec, needed, self._available)
            # the file's tensors and their float32 copy, which the caller holds from now on
            self._available -= 2 * spec.num_parameters * _FLOAT_BYTES


def blockable(model: nn.Module) -> bool:
    """Whether the blocked forward can run ``model``: the DWSNets (input-unit mixing included;
    input templates and baselines run plainly)."""
    from dwscli.nn.models import EquivariantDWSNet, InvariantDWSNet

    if isinstance(model, EquivariantDWSNet) and (
        model.probes is not None
        or model.config.delta_scale != "zoo"
        or model.output_solve is not None
    ):
        # neuron probes, a change in units of a layer's RMS and a solved output layer read
        # whole layers
        return False
    if isinstance(model, InvariantDWSNet) and model.pool is None:
        return False  # no trunk: only the functional probes, which read whole nets anyway
    return isinstance(model, (InvariantDWSNet, EquivariantDWSNet)) and model.input_templates is None


def supports_blocking(model: nn.Module) -> bool:
    return blockable(model) and not model.training


def forward_within_memory(
    model: nn.Module | Callable[[WeightSpace], Tensor],
    space: WeightSpace,
    budget_bytes: int = DEFAULT_BUDGET_BYTES,
    batch_budget_bytes: int | None = None,
) -> Tensor | WeightSpace:
    """``model(space)`` (under ``torch.no_grad``) within a memory budget: a batch whose
    features exceed ``batch_budget_bytes`` runs in sub-batches that fit (any model: in eval mode
    nets do not interact), and a single net whose features exceed ``budget_bytes`` runs by row
    blocks (DWSNets that :func:`blockable` accepts; other models run it plainly, one net at a
    time); a plain function runs as it is. Without ``batch_budget_bytes`` a CPU batch runs in
    cache-sized sub-batches (:func:`cpu_batch_bytes`), a GPU batch in sub-batches of
    ``BATCH_BUDGET_BYTES``."""
    if not isinstance(model, nn.Module):
        return model(space)
    if batch_budget_bytes is None:
        on_cpu = space.weights[0].device.type == "cpu"
        batch_budget_bytes = cpu_batch_bytes() if on_cpu else BATCH_BUDGET_BYTES
    per_net = plain_forward_peak_bytes(model, space) // max(1, space.batch_size)
    batch_fits = space.batch_size == 1 or per_net * space.batch_size <= batch_budget_bytes
    fits = per_net <= budget_bytes and batch_fits
    if fits:
        return model(space)
    if per_net <= budget_bytes or not supports_blocking(model):  # batch by size
        step = max(1, batch_budget_bytes // per_net)
        return _joined(
            [model(_slice(space, s, s + step)) for s in range(0, space.batch_size, step)]
        )
    net_bytes = sum(t[0].numel() for t in space.tensors()) * _FLOAT_BYTES
    block_bytes = max(_MIN_BLOCK_BYTES, int(_BLOCK_SHARE_OF_NET * net_bytes))
    return _joined(
        [
            BlockedForward(model, _slice(space, k, k + 1), block_bytes).run()
            for k in range(space.batch_size)
        ]
    )


def cpu_batch_bytes() -> int:
    """Feature bytes of one CPU sub-batch for the threads torch uses now, at most
    ``BATCH_BUDGET_BYTES`` (torch counts the host's cores, not a container's quota)."""
    return min(CPU_BATCH_BYTES_PER_THREAD * max(1, torch.get_num_threads()), BATCH_BUDGET_BYTES)


def _joined(parts: list) -> Tensor | WeightSpace:
    """The parts' outputs as one batch; a single part as it is (a copy of a wide net's output
    would double it at the end of the forward, its peak)."""
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], Tensor):
        return torch.cat(parts)
    return WeightSpace.stack(parts)


def _slice(space: WeightSpace, start: int, stop: int) -> WeightSpace:
    return space[start:stop]


@dataclass
class _Stats:
    """A big (two-axis) tensor's pooled statistics: row means [B, d_r, C], column means
    [B, d_c, C], total mean [B, C]; with maxima when the invariant head pools with max."""

    row: Tensor
    col: Tensor
    total: Tensor
    row_max: Tensor | None = None
    col_max: Tensor | None = None


class BlockedForward:
    """One blocked forward of a DWSNet on one net (see the module docstring)."""

    def __init__(self, model: nn.Module, space: WeightSpace, block_bytes: int) -> None:
        """``block_bytes``: the size of one row block of features (1: one row at a time)."""
        from dwscli.nn.models import InvariantDWSNet

        if getattr(model, "input_templates", None) is not None:
            raise DwsError("the blocked forward does not implement input templates")
        self.model = model
        self.space = space
        self.invariant = isinstance(model, InvariantDWSNet)
        self.blocks = list(model.blocks)
        self.layers: list[DWSLayer] = [block.layer for block in self.blocks]
        if not self.invariant:
            self.layers.append(model.output)
        layouts = self.layers[0].layouts
        self.depth = space.spec.depth
        # Big tensors: two set axes in the canonical layout (hidden-to-hidden weights, and
        # weights touching a fixed set in "shared" mode). They are never folded.
        self.big = [len(layout.axes) == 2 for layout in layouts]
        self.axes = [layout.axes for layout in layouts]
        self.layouts = layouts
        channels = max(layer.out_channels for layer in self.layers)
        self.block_bytes = block_bytes
        self.channels = channels
        self.normalizer = model.normalizer
        # The layers' W-then-b order. Big tensors stay in weight units (views of the input):
        # each row block is normalised when it is read, so no normalised copy of the net is
        # held beside it; small ones are normalised once.
        raw = [*space.weights, *space.biases]
        self.inputs = [
            layout.to_canonical((x if big else self.normalizer.normalize_tensor(t, x))[..., None])
            for t, (layout, x, big) in enumerate(zip(layouts, raw, self.big))
        ]

    # -- per-layer pieces ------------------------------------------------------------------

    def _pooled(self, t: int, keep: tuple[int, ...], small: list, stats: list) -> Tensor:
        if not self.big[t]:
            return _pool(small[t], self.axes[t], keep)
        row_set, col_set = self.axes[t]
        s: _Stats = stats[t]
        if keep == (row_set,):
            return s.row
        if keep == (col_set,):
            return s.col
        if keep == ():
            return s.total
        raise AssertionError("a full big tensor is only read block by block")

    def _layer_terms(self, layer: DWSLayer, small: list, stats: list):
        """Small targets' full outputs, and for big targets their full-group weight and the
        broadcast terms from pooled statistics (shapes [B, d_r|1, d_c|1, C])."""
        plan = layer.plan
        weights = [m.weight for target_maps in layer.maps for m in target_maps]
        biases = list(layer.biases)
        small_out: list[Tensor | None] = [None] * len(self.axes)
        big_terms: list[list[Tensor]] = [[] for _ in self.axes]
        big_weight: list[Tensor | None] = [None] * len(self.axes)
        for (keep, sources), t, weight in zip(plan.groups, plan.group_targets, weights):
            if self.big[t] and keep == self.axes[t]:
                if tuple(sources) != (t,):
                    raise AssertionError("a big tensor's full group reads only itself")
                big_weight[t] = weight
                continue
            parts = [self._pooled(s, keep, small, stats) for s in sources]
            y = torch.matmul(parts[0] if len(parts) == 1 else torch.cat(parts, -1), weight.t())
            term = _broadcast_shape(y, self.axes[t], keep)
            if self.big[t]:
                big_terms[t].append(term)
            else:
                current = small_out[t]
                small_out[t] = term if current is None else current + term
        for t in range(len(self.axes)):
            if biases:
                bias = biases[t][None]  # stored in broadcast layout: [1, *(size or 1), C]
                if self.big[t]:
                    big_terms[t].append(bias)
                else:
                    small_out[t] = small_out[t] + bias
        return small_out, big_weight, big_terms

    def _pointwise(self, k: int, t: int, x_in: Tensor | None, y: Tensor) -> Tensor:
        """Block k's norm/activation/residual on target t's canonical output ``y``."""
        if k >= len(self.blocks):  # the equivariant output layer: nothing after it
            return y
        block = self.blocks[k]
        layout = self.layouts[t]
        fixed = self.layers[0].fixed
        y = layout.from_canonical(y, fixed)
        if block.norm is not None:
            y = block.norm.norms[t](y)
        y = block.act.module(y)
        if block.drop is not None:
            y = block.drop.module(y)
        y = layout.to_canonical(y)
        if block.residual:
            y = y + x_in
        return y

    # -- passes ---------------------------------------------------------------------------

    def run(self) -> Tensor | WeightSpace:
        with torch.no_grad():
            small = [None if big else x for big, x in zip(self.big, self.inputs)]
            stats = [self._input_stats(t) if big else None for t, big in enumerate(self.big)]
            history = []  # per layer: (small inputs, stats of inputs, layer terms)
            for k, layer in enumerate(self.layers):
                small_out, big_weight, big_terms = self._layer_terms(layer, small, stats)
                history.append((small, big_weight, big_terms))
                next_small: list[Tensor | None] = []
                for t, out in enumerate(small_out):
                    next_small.append(None if self.big[t] else self._pointwise(k, t, small[t], out))
                last = k == len(self.layers) - 1
                if self.invariant or not last:  # the output layer's statistics are not needed
                    stats = self._pass(history, want_max=self.invariant and last)
                small = next_small
            if self.invariant:
                return self._invariant_head(small, stats)
            return self._equivariant_output(history, small)

    def _read(self, t: int, start: int, stop: int) -> Tensor:
        """Rows start:stop of big tensor t's input, normalised (bit for bit as the plain
        forward normalises the whole tensor: the same elementwise operations)."""
        return self.normalizer.normalize_tensor(t, self.inputs[t][:, start:stop])

    def _input_stats(self, t: int) -> _Stats:
        x = self._read(t, 0, self.inputs[t].shape[1])
        row = x.mean(dim=2)
        return _Stats(row, x.mean(dim=1), row.mean(dim=1))

    def _blocks(self, t: int):
        """Row ranges of big tensor t, each about ``block_bytes`` of features (equal sizes
        across tensors, so freed blocks are reused rather than fragmenting the heap); after each
        block the heap's free pages go back to the kernel (:func:`release_free_heap`)."""
        rows, cols = self.inputs[t].shape[1], self.inputs[t].shape[2]
        step = max(1, self.block_bytes // (cols * self.channels * _FLOAT_BYTES))
        for start in range(0, rows, step):
            yield start, min(rows, start + step)
            # the block's temporaries are freed by now: hand their heap pages back, or the
            # fragmented heap keeps them resident and the peak grows pass after pass
            release_free_heap()

    def _through(self, history: list, t: int, start: int, stop: int) -> Tensor:
        """Rows start:stop of big tensor t after every layer in ``history``."""
        x = self._read(t, start, stop)
        for k, entry in enumerate(history):
            x = self._layer(k, entry, t, x, start, stop)
        return x

    def _layer(self, k: int, entry: tuple, t: int, x: Tensor, start: int, stop: int) -> Tensor:
        """Layer k (its ``history`` entry) on rows start:stop of big tensor t."""
        _, big_weight, big_terms = entry
        y = torch.matmul(x, big_weight[t].t())
        for term in big_terms[t]:
            y += term[:, start:stop] if term.shape[1] != 1 else term
        return self._pointwise(k, t, x, y)

    def _pass(self, history: list, *, want_max: bool) -> list[_Stats | None]:
        """Statistics of every big tensor after the layers in ``history``."""
        stats: list[_Stats | None] = [None] * len(self.axes)
        for t, big in enumerate(self.big):
            if not big:
                continue
            rows = self.inputs[t].shape[1]
            row_means, col_sum, row_max, col_max = [], None, [], None
            for start, stop in self._blocks(t):
                x = self._through(history, t, start, stop)
                row_means.append(x.mean(dim=2))
                part = x.sum(dim=1)
                col_sum = part if col_sum is None else col_sum + part
                if want_max:
                    row_max.append(x.amax(dim=2))
                    block_max = x.amax(dim=1)
                    col_max = block_max if col_max is None else torch.maximum(col_max, block_max)
            row = torch.cat(row_means, dim=1)
            assert col_sum is not None
            stats[t] = _Stats(
                row,
                col_sum / rows,
                row.mean(dim=1),
                torch.cat(row_max, dim=1) if want_max else None,
                col_max,
            )
        return stats

    def _invariant_head(self, small: list, stats: list) -> Tensor:
        """The model's pooling and head, from small tensors and big tensors' statistics."""
        model = self.model
        pool = model.pool
        fixed = pool.fixed
        pieces = []
        for t, layout in enumerate(pool.layouts):  # "full"-mode layouts, as the pooling uses
            if not self.big[t]:
                pieces += pool.pool_tensor(layout, self.layouts[t].from_canonical(small[t], fixed))
                continue
            s: _Stats = stats[t]
            row_set, col_set = self.axes[t]
            hidden = [fixed.is_hidden(row_set), fixed.is_hidden(col_set)]
            shared = pool.fixed_mixing == "shared"
            if all(hidden) or shared:
                mean, peak = s.total, None
                if pool.stats == "mean+max":
                    assert s.col_max is not None
                    peak = s.col_max.amax(dim=1)
            elif hidden[0]:  # columns fixed (W_1): keep them
                mean, peak = s.col, s.col_max
            else:  # rows fixed (W_L)
                mean, peak = s.row, s.row_max
            pieces.append(mean.reshape(mean.shape[0], -1))
            if pool.stats == "mean+max":
                assert peak is not None
                pieces.append(peak.reshape(peak.shape[0], -1))
        pooled = torch.cat(pieces, dim=1)
        if model.probes is not None:
            pooled = torch.cat([pooled, model.probes(self.space)], dim=1)
        return model.head(pooled)

    def _equivariant_output(self, history: list, small: list) -> WeightSpace:
        """The output layer's change, written block by block into the output weights.

        Input-unit mixing (W_1 and b_1 only) is row-local: the change of row h of W_1 and of
        b_1[h] depends on row h of the trunk's W_1 features alone, so it is added block by block
        beside the output layer's change."""
        model = self.model
        mixing = model.input_mixing
        fixed = self.layers[0].fixed
        space = self.space
        tensors = [*space.weights, *space.biases]
        result: list[Tensor] = []
        bias_change: Tensor | None = None  # of b_1, from the input-unit mixing of W_1's rows
        for t, layout in enumerate(self.layouts):
            if not self.big[t]:
                out = layout.from_canonical(small[t], fixed)[..., 0]
                if mixing is not None and t == 0:  # trunk features: the output layer's input
                    change, bias_change = mixing(layout.from_canonical(history[-1][0][0], fixed))
                    out = out + change
            else:
                out = torch.empty_like(self.inputs[t][..., 0])
                if mixing is not None and t == 0:
                    bias_change = out.new_empty(out.shape[:2])
                for start, stop in self._blocks(t):
                    if mixing is not None and t == 0:
                        trunk = self._through(history[:-1], t, start, stop)
                        last = len(history) - 1
                        block = self._layer(last, history[-1], t, trunk, start, stop)[..., 0]
                        change, bias_change[:, start:stop] = mixing(trunk)  # type: ignore[index]
                        out[:, start:stop] = block + change
                    else:
                        out[:, start:stop] = self._through(history, t, start, stop)[..., 0]
            if t == self.depth and bias_change is not None:  # b_1
                out = out + bias_change
            std = model.normalizer.std[t]
            out = out.mul_(std) if self.big[t] else out * std  # big ones: no second copy
            # in place: the change becomes the output weights without another full copy
            result.append(
                out.add_(tensors[t] if model.config.residual else model.normalizer.mean[t])
            )
        output = WeightSpace(result[: self.depth], result[self.depth :], space.spec)
        return model.keep_frozen(space, output)


__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "BlockedForward",
    "available_memory_bytes",
    "check_memory",
    "feature_bytes",
    "forward_within_memory",
    "memory_needed_bytes",
    "plain_forward_peak_bytes",
]
