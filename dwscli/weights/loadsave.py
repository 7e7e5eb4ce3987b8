"""Load and save MLP checkpoints: :class:`Checkpoint`, :func:`load_checkpoint`,
:func:`save_checkpoint` and :func:`save_space`.

:func:`save_checkpoint` writes the same keys, shapes, dtypes and metadata as the input, plus
provenance metadata under ``dws.`` keys. A tensor the operation did not change is written from the
original tensor object, so it is byte-identical to the input. Outputs are always safetensors,
written atomically, and never replace an existing file (the input included) unless ``force``.
NaN/Inf weights are refused on load and on save unless allowed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from dwscli import __version__
from dwscli.errors import DwsError
from dwscli.weights.atomic import atomic_write_chunks, check_writable_target, make_out_dir
from dwscli.weights.fileformat import (
    TensorInfo,
    check_input_path,
    load_safetensors_tensors,
    load_torch_state_dict,
    looks_like_text,
    read_head,
    read_safetensors_header,
    sniff_format,
    torch_dtype_name,
)
from dwscli.weights.filewrite import output_path, same_file, serialize_chunks
from dwscli.weights.layout import KEY_STYLES, CheckpointLayout, LayerLayout, plan_layout
from dwscli.weights.metadata import (
    METADATA_SPEC_KEY,
    PROVENANCE_PREFIX,
    provenance_metadata,
    resolve_spec,
)
from dwscli.weights.space import WeightSpace
from dwscli.weights.spec import MLPSpec

_BITS_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
#: Files up to this size are read with one call (opening a file costs more than reading a
#: small one); larger ones are read in pieces, so only the tensors the layout uses are read.
WHOLE_READ_BYTES = 1024**2


@dataclass
class Checkpoint:
    """A loaded MLP checkpoint.

    ``space`` (batch 1) is what operations work on: float32, or float64 when the file holds any
    float64 tensor, so that no stored value loses precision. ``tensors`` are the tensors exactly
    as stored, kept so that :func:`save_checkpoint` can write untouched ones back byte-identical.
    ``activation_source`` says where the spec's activation came from: ``metadata:dws.spec``,
    ``metadata:activation``, ``argument`` or ``default``.
    """

    path: Path
    space: WeightSpace
    layout: CheckpointLayout
    tensors: dict[str, Tensor]
    activation_source: str = "default"

    @property
    def spec(self) -> MLPSpec:
        return self.space.spec

    @property
    def metadata(self) -> dict[str, str]:
        return self.layout.metadata

    @property
    def stored_dtypes(self) -> list[torch.dtype]:
        """The distinct dtypes the tensors are stored in, in network order."""
        return list(dict.fromkeys(self.layout.dtypes.values()))

    def constrain(self, space: WeightSpace) -> WeightSpace:
        """``space`` with the biases of bias-free layers set to zero, so that it can be saved.

        An operation that produces biases (say an equivariant processor) for a layer that has
        none in the file cannot be written back in the input's layout; call this to drop them.
        """
        biases = list(space.biases)
        for i in self.layout.bias_free_layers:
            biases[i] = torch.zeros_like(biases[i])
        return WeightSpace(list(space.weights), biases, space.spec)

    def __repr__(self) -> str:
        dtypes = ",".join(str(d).removeprefix("torch.") for d in self.stored_dtypes)
        return f"Checkpoint({self.path.name}: {self.spec}, stored {dtypes})"


def _checkable(t: Tensor) -> Tensor:
    """``t`` in a dtype that isnan/isinf support, without overflowing float64 values."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def _bits(t: Tensor) -> Tensor:
    return t.contiguous().view(_BITS_VIEW[t.element_size()])


def _bit_equal(a: Tensor, b: Tensor) -> bool:
    """Exact equality of the stored bits (NaN == NaN, and -0.0 != 0.0)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(_bits(a), _bits(b))


def _check_finite(path: Path, layers: list[LayerLayout], tensors: Mapping[str, Tensor]) -> None:
    keys = CheckpointLayout(layers).tensor_keys()
    # Fast path, one reduction per tensor: a sum is finite only if every value is (a finite sum
    # that overflowed falls through to the exact check below, which then finds nothing).
    if all(math.isfinite(float(_checkable(tensors[key]).sum())) for key in keys):
        return
    bad: list[tuple[str, int, int]] = []
    for key in keys:
        t = _checkable(tensors[key])
        if bool(torch.isfinite(t).all()):  # one pass in the common case; count only on failure
            continue
        n_nan, n_inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
        bad.append((key, n_nan, n_inf))
    if bad:
        key, n_nan, n_inf = bad[0]
        more = f" (and {len(bad) - 1} more tensor(s) with non-finite values)" if bad[1:] else ""
        raise DwsError(
            f"{path}: tensor {key!r} has {n_nan} NaN and {n_inf} Inf values{more}; "
            "refusing non-finite weights",
            hint="dws inspect and dws permute take --allow-nonfinite to read them anyway "
            "(library: allow_nonfinite=True); other commands refuse them",
        )


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    activation: str | None = None,
    allow_nonfinite: bool = False,
    dtype: torch.dtype | None = None,
) -> Checkpoint:
    """Load an MLP checkpoint (safetensors, or a ``.pt``/``.pth`` state dict).

    ``activation`` (``"relu"``, ``"sine;w0=30"``, …) fills in the activation when the file's
    metadata does not record one; if the metadata does and disagrees, that is an error rather
    than a silent override. ``dtype`` is the processing dtype of ``Checkpoint.space`` (default:
    float32, or float64 when any stored tensor is float64).
    """
    p = Path(path)
    size = check_input_path(p)
    # a small file is read once, whole; a large one in pieces (header, then only the tensors)
    head = read_head(p, size if size <= WHOLE_READ_BYTES else 512)
    whole = head if len(head) == size else None
    if looks_like_text(head[:512]):  # no checkpoint format starts with 512 printable characters
        raise DwsError(f"{p}: looks like a text file, not a checkpoint (safetensors or .pt)")
    fmt = sniff_format(p, head, size)

    if fmt == "safetensors":
        infos, metadata = read_safetensors_header(p, size, head)
        layers = plan_layout(p, infos)
        keys = CheckpointLayout(layers).tensor_keys()
        tensors = load_safetensors_tensors(p, infos, keys, whole)
    else:
        state = load_torch_state_dict(p)
        infos = {
            key: TensorInfo(
                tuple(t.shape),
                t.dtype if t.is_floating_point() else None,
                torch_dtype_name(t.dtype),
            )
            for key, t in state.items()
        }
        metadata = {}
        layers = plan_layout(p, infos)
        tensors = {key: state[key] for key in CheckpointLayout(layers).tensor_keys()}

    if not allow_nonfinite:
        _check_finite(p, layers, tensors)

    widths = (
        infos[layers[0].weight_key].shape[1],
        *(infos[layer.weight_key].shape[0] for layer in layers),
    )
    spec, source = resolve_spec(p, widths, metadata, activation)

    if dtype is None:
        stored = {t.dtype for t in tensors.values()}
        dtype = torch.float64 if torch.float64 in stored else torch.float32
    weights = [tensors[layer.weight_key].to(dtype)[None] for layer in layers]
    biases = [
        tensors[layer.bias_key].to(dtype)[None]
        if layer.bias_key is not None
        else torch.zeros(1, infos[layer.weight_key].shape[0], dtype=dtype)
        for layer in layers
    ]
    space = WeightSpace(weights, biases, spec)
    layout = CheckpointLayout(layers, metadata, fmt)
    return Checkpoint(p, space, layout, tensors, source)


def _write_value(
    target: Path, key: str, new: Tensor, original: Tensor, *, allow_nonfinite: bool
) -> Tensor:
    """The tensor to write for ``key``: the original object when the value is unchanged."""
    new = new.detach().cpu()
    # no copy when the dtype is already right: the written tensor may share the caller's memory
    cast = new.to(original.dtype).contiguous()
    if _bit_equal(cast, original) or _bit_equal(new, original.to(new.dtype)):
        return original  # unchanged: the stored bytes go back untouched
    # A finite sum first (as on reading): isfinite() holds an abs() copy and masks, and
    # summing its bool result widened it to int64, together about three times the weights'
    # own size; count only when the sum says there may be something to report
    if not allow_nonfinite and not math.isfinite(float(_checkable(cast).sum())):
        n_bad = int(torch.count_nonzero(~torch.isfinite(_checkable(cast))))
        if n_bad:
            was_finite = bool(torch.isfinite(_checkable(new)).all())
            why = (
                f"overflow when cast back to {torch_dtype_name(original.dtype)}"
                if was_finite
                else "the operation produced NaN/Inf"
            )
            raise DwsError(
                f"{target}: refusing to write tensor {key!r}: {n_bad} non-finite values ({why})"
            )
    return cast


def save_checkpoint(
    path: str | os.PathLike[str],
    checkpoint: Checkpoint,
    space: WeightSpace | None = None,
    *,
    provenance: Mapping[str, object] | None = None,
    force: bool = False,
    allow_nonfinite: bool = False,
    create_parent: bool = False,
) -> Path:
    """Write ``checkpoint`` (with the weights of ``space``, batch 1, if given) to ``path``.

    Same keys, shapes, dtypes and metadata as the input; provenance goes into metadata as
    ``dws.version``, ``dws.source`` (input file name), ``dws.<key>`` for each ``provenance``
    item (which may override the first two) and ``dws.spec`` (unless the activation was only the
    default guess, see :attr:`Checkpoint.activation_source`). Tensors whose values did not change
    are written byte-identical. The output is safetensors (a path without a suffix gets
    ``.safetensors``; ``.pt`` is refused), written atomically, and an existing file (the input
    included) is replaced only with ``force``. ``create_parent`` creates a missing output
    directory, once every check has passed (a refused write leaves no directory). Returns the
    path written.
    """
    target = output_path(path)
    if not force and same_file(target, checkpoint.path):
        raise DwsError(f"{target}: is the input checkpoint; pass --force to overwrite it")
    check_writable_target(target, force=force, parent_may_be_missing=create_parent)

    space = checkpoint.space if space is None else space
    if space.batch_size != 1:
        raise DwsError(
            f"{target}: a checkpoint holds one network but the weight space has a batch of "
            f"{space.batch_size}",
            hint="save each network of the batch separately (WeightSpace.unbind)",
        )
    if space.spec.widths != checkpoint.spec.widths:
        raise DwsError(
            f"{target}: weights of spec {space.spec} do not fit the layout of "
            f"{checkpoint.path.name} ({checkpoint.spec})"
        )

    tensors: dict[str, Tensor] = {}
    for i, layer in enumerate(checkpoint.layout.layers):
        w_key = layer.weight_key
        tensors[w_key] = _write_value(
            target,
            w_key,
            space.weights[i][0],
            checkpoint.tensors[w_key],
            allow_nonfinite=allow_nonfinite,
        )
        bias = space.biases[i][0]
        if layer.bias_key is None:
            if bool((bias != 0).any()):
                largest = float(bias.abs().max())
                raise DwsError(
                    f"{target}: layer {layer.module or w_key!r} has no bias in "
                    f"{checkpoint.path.name} but the new weights give it a non-zero one "
                    f"(up to {largest:.3g}); refusing to drop it",
                    hint="store a zero bias for that layer in the input to keep what the "
                    "operation predicts (library: Checkpoint.constrain(space) drops it knowingly)",
                )
            continue
        tensors[layer.bias_key] = _write_value(
            target,
            layer.bias_key,
            bias,
            checkpoint.tensors[layer.bias_key],
            allow_nonfinite=allow_nonfinite,
        )

    metadata = dict(checkpoint.metadata)
    # Record the spec, except when its activation was only dws's default guess: writing that
    # down would turn a guess into what later reads take as the file's own statement.
    if checkpoint.activation_source != "default" or space.spec != checkpoint.spec:
        metadata[METADATA_SPEC_KEY] = str(space.spec)
    metadata[PROVENANCE_PREFIX + "version"] = __version__
    metadata[PROVENANCE_PREFIX + "source"] = checkpoint.path.name
    metadata.update(provenance_metadata(provenance))
    chunks = serialize_chunks(target, tensors, metadata)
    if create_parent:
        make_out_dir(target.parent)
    return atomic_write_chunks(target, chunks, force=force)


def save_space(
    path: str | os.PathLike[str],
    space: WeightSpace,
    *,
    metadata: Mapping[str, str] | None = None,
    force: bool = False,
    key_style: str = "sequential",
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a fresh weight space (batch 1) as a plain safetensors state dict.

    Keys follow ``key_style``: ``sequential`` (default) gives ``0.weight``, ``0.bias``,
    ``2.weight``, … — the state dict of ``nn.Sequential(Linear, act, Linear, …)``; ``layers``
    gives ``layers.0.weight``, …; ``fc`` gives ``fc1.weight``, …. Metadata is ``metadata`` plus
    ``dws.spec`` and ``dws.version``. Tensors are written in ``dtype`` (default: the space's).
    """
    target = output_path(path)
    check_writable_target(target, force=force)
    if key_style not in KEY_STYLES:
        raise DwsError(f"unknown key style {key_style!r}; choose one of {', '.join(KEY_STYLES)}")
    if space.batch_size != 1:
        raise DwsError(
            f"{target}: a checkpoint holds one network but the weight space has a batch of "
            f"{space.batch_size}",
            hint="save each network of the batch separately (WeightSpace.unbind)",
        )
    name = KEY_STYLES[key_style]
    out_dtype = dtype or space.dtype
    tensors: dict[str, Tensor] = {}
    for i, (w, b) in enumerate(zip(space.weights, space.biases, strict=True)):
        tensors[f"{name(i)}.weight"] = w[0].detach().to("cpu", out_dtype, copy=True).contiguous()
        tensors[f"{name(i)}.bias"] = b[0].detach().to("cpu", out_dtype, copy=True).contiguous()
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[METADATA_SPEC_KEY] = str(space.spec)
    meta[PROVENANCE_PREFIX + "version"] = __version__
    return atomic_write_chunks(target, serialize_chunks(target, tensors, meta), force=force)
