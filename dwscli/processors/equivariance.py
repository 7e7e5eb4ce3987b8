"""``dws check-equivariance PROCESSOR``: the symmetry check of one shipped or saved processor."""

from __future__ import annotations

from dwscli.nn.equivariance import check_row, equivariance_error
from dwscli.processors.loading import load_processor


def check_processor(name_or_path: str, seed: int = 0) -> list[dict]:
    """Equivariance/invariance error of a shipped or saved processor on random nets of its spec."""
    processor = load_processor(name_or_path)
    spec = processor.spec
    invariant = processor.kind == "invariant"
    model = processor.model.eval()
    error = equivariance_error(model, spec, seed=seed, invariant=invariant, as_space=True, trials=2)
    kind = "invariant" if invariant else "equivariant"
    return [check_row(processor.name, spec, kind, error)]


__all__ = ["check_processor"]
