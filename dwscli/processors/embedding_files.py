"""Writing embeddings (``.npy``, ``.csv``, ``.jsonl``, ``.safetensors``) and t-SNE plots.

Every file is written atomically (temporary file + rename) and an existing one is replaced only
with ``force``. ``.npy`` holds the bare ``[N, D]`` float32 matrix, so the paths go to a sidecar
``OUT.paths.txt`` (``emb.npy`` -> ``emb.paths.txt``), one a line in row order. The other
formats carry the paths themselves. scikit-learn (t-SNE) and matplotlib (the PNG) are imported
only when a plot is asked for, which keeps ``dws embed`` without ``--plot`` quick to start.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dwscli.errors import DwsError
from dwscli.weights.atomic import atomic_path, atomic_write_bytes, check_writable_target

FORMATS = (".npy", ".csv", ".jsonl", ".safetensors")
#: Where ``--color-by KEY`` looks in a checkpoint's metadata, in order (``dws zoo export`` keys).
COLOR_KEY_PATTERNS = ("{}", "dws.zoo.label.{}", "dws.zoo.metric.{}", "dws.zoo.hparam.{}")
EXACT_TSNE_ROWS = 500
MAX_CATEGORIES = 20  # more distinct non-numeric values than this are not worth a legend


def embedding_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise DwsError(
            f"{path}: cannot tell the embedding format from the name",
            hint=f"end the file name in {', '.join(FORMATS)}",
        )
    return suffix


def sidecar_path(path: Path) -> Path:
    """The paths file that goes with an ``.npy`` matrix."""
    return path.with_suffix(".paths.txt")


def check_targets(output: Path, plot: Path | None, *, force: bool) -> None:
    """Refuse bad output names before any work is done."""
    fmt = embedding_format(output)
    check_writable_target(output, force=force)
    if fmt == ".npy":
        check_writable_target(sidecar_path(output), force=force)
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise DwsError(f"{plot}: the t-SNE plot is written as PNG; use a .png file name")
        if plot.resolve() == output.resolve():
            raise DwsError(f"{plot}: is also the embeddings file; choose another plot name")
        check_writable_target(plot, force=force)


def write_embeddings(
    output: Path,
    paths: Sequence[str],
    vectors: np.ndarray,
    *,
    metadata: Mapping[str, str] | None = None,
    force: bool = False,
) -> list[Path]:
    """Write ``vectors`` ``[N, D]`` (row k is ``paths[k]``); returns the files written."""
    fmt = embedding_format(output)
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != len(paths):
        raise DwsError(f"{output}: {len(paths)} paths but a {matrix.shape} matrix")
    if fmt == ".npy":
        broken = next((p for p in paths if "\n" in p or "\r" in p), None)
        if broken is not None:  # checked before anything is written
            raise DwsError(
                f"{output}: input path {broken!r} contains a line break, which the one-path-a-line "
                f"{sidecar_path(output).name} cannot hold",
                hint="write .jsonl, .csv or .safetensors, which store each path exactly",
            )
        buffer = io.BytesIO()
        np.save(buffer, matrix)
        written = [atomic_write_bytes(output, buffer.getvalue(), force=force)]
        text = "".join(f"{p}\n" for p in paths)
        data = text.encode("utf-8", "surrogateescape")  # a non-UTF-8 name keeps its bytes
        written.append(atomic_write_bytes(sidecar_path(output), data, force=force))
        return written
    if fmt == ".csv":
        buffer_text = io.StringIO()
        writer = csv.writer(buffer_text, lineterminator="\n")
        writer.writerow(["path", *(f"e{k}" for k in range(matrix.shape[1]))])
        for path, row in zip(paths, matrix.tolist()):
            writer.writerow([path, *(repr(v) for v in row)])
        data = buffer_text.getvalue().encode("utf-8", "surrogateescape")
        return [atomic_write_bytes(output, data, force=force)]
    if fmt == ".jsonl":
        lines = (
            json.dumps({"path": path, "embedding": row}) + "\n"
            for path, row in zip(paths, matrix.tolist())
        )
        return [atomic_write_bytes(output, "".join(lines).encode(), force=force)]
    import safetensors.numpy

    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta["paths"] = json.dumps(list(paths))
    data = safetensors.numpy.save({"embeddings": matrix}, metadata=meta)
    return [atomic_write_bytes(output, data, force=force)]


# ------------------------------------------------------------------------------------------
# t-SNE plot


def color_values(metadata: Sequence[Mapping[str, str]], key: str) -> list[str | None]:
    """Each row's value of metadata field ``key`` (or its ``dws zoo export`` form), or None."""
    candidates = [pattern.format(key) for pattern in COLOR_KEY_PATTERNS]
    for candidate in candidates:
        values = [meta.get(candidate) for meta in metadata]
        if any(v is not None for v in values):
            return values
    raise DwsError(
        f"no embedded checkpoint records metadata {key!r} (looked for {', '.join(candidates)})",
        hint="dws inspect PATH shows a checkpoint's metadata",
    )


def tsne_2d(vectors: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of ``[N, D]`` rows (perplexity min(30, (N - 1) / 3)); N >= 3.

    Deterministic for a given ``seed``; PCA initialisation when D >= 2.
    """
    from sklearn.manifold import TSNE

    count = vectors.shape[0]
    if count < 3:
        raise DwsError(f"a t-SNE plot needs at least 3 embeddings, got {count}")
    data = np.asarray(vectors, dtype=np.float64)
    tsne = TSNE(
        n_components=2,
        perplexity=min(30.0, (count - 1) / 3),
        init="pca" if data.shape[1] >= 2 else "random",
        # exact gradients are cheaper than Barnes-Hut's tree (and its OpenMP threads) for few rows
        method="exact" if count <= EXACT_TSNE_ROWS else "barnes_hut",
        random_state=seed,
    )
    return tsne.fit_transform(data)


def _as_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def plot_points(
    path: Path,
    points: np.ndarray,
    *,
    colors: Sequence[str | None] | None = None,
    color_by: str | None = None,
    title: str = "t-SNE",
    force: bool = False,
) -> Path:
    """Scatter ``[N, 2]`` points to a PNG; numeric colours get a colour bar, others a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 5), dpi=100)
    try:
        if colors is None:
            axes.scatter(points[:, 0], points[:, 1], s=12)
        else:
            _scatter_colored(figure, axes, points, colors, color_by or "value")
        axes.set_title(title)
        axes.set_xticks([])
        axes.set_yticks([])
        figure.tight_layout()
        with atomic_path(path, force=force) as temporary:
            figure.savefig(temporary, format="png")
    finally:
        plt.close(figure)
    return path


def _scatter_colored(figure, axes, points: np.ndarray, colors, label: str) -> None:
    numbers = [_as_float(c) for c in colors]
    known = [c for c in colors if c is not None]
    distinct = sorted(set(known), key=lambda v: (_as_float(v) is None, _as_float(v) or 0.0, v))
    is_integer = all(n is not None and float(n).is_integer() for n in numbers if n is not None)
    numeric = all(n is not None for c, n in zip(colors, numbers) if c is not None)
    missing = [k for k, c in enumerate(colors) if c is None]
    if missing:
        axes.scatter(points[missing, 0], points[missing, 1], s=12, c="lightgrey", label="?")
    if numeric and not (is_integer and len(distinct) <= MAX_CATEGORIES):
        present = [k for k, c in enumerate(colors) if c is not None]
        scatter = axes.scatter(
            points[present, 0],
            points[present, 1],
            s=12,
            c=[numbers[k] for k in present],
            cmap="viridis",
        )
        figure.colorbar(scatter, ax=axes, label=label)
        return
    cmap = _category_colors(len(distinct))
    for k, value in enumerate(distinct[:MAX_CATEGORIES]):
        rows = [i for i, c in enumerate(colors) if c == value]
        axes.scatter(points[rows, 0], points[rows, 1], s=12, color=cmap[k], label=value)
    rest = [i for i, c in enumerate(colors) if c is not None and c not in distinct[:MAX_CATEGORIES]]
    if rest:
        axes.scatter(points[rest, 0], points[rest, 1], s=12, c="black", label="other")
    axes.legend(title=label, fontsize="small", markerscale=1.5, loc="best")


def _category_colors(count: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(k % cmap.N) for k in range(max(count, 1))]


__all__ = [
    "FORMATS",
    "check_targets",
    "color_values",
    "embedding_format",
    "plot_points",
    "sidecar_path",
    "tsne_2d",
    "write_embeddings",
]
