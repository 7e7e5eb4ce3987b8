"""Read and write MLP checkpoints: safetensors (and read-only ``.pt``) state dicts in torch layout.

This module is the public face; the work is split by concern:

- :mod:`dwscli.weights.fileformat`: the file level (safetensors/``.pt`` reading without trusting
  the file, bounded by :mod:`dwscli.limits`; canonical safetensors bytes);
- :mod:`dwscli.weights.layout`: the key level (which tensors form which linear layer, in order);
- :mod:`dwscli.weights.metadata`: the metadata level (``dws.spec``, ``activation``, provenance);
- :mod:`dwscli.weights.loadsave`: :class:`Checkpoint`, :func:`load_checkpoint`,
  :func:`save_checkpoint`, :func:`save_space`.

Activations and their options come from the one table in :mod:`dwscli.weights.activations`.
"""

from __future__ import annotations

from dwscli.weights.fileformat import SAFETENSORS_SUFFIX, TORCH_SUFFIXES
from dwscli.weights.layout import KEY_STYLES, CheckpointLayout, LayerLayout, natural_key
from dwscli.weights.loadsave import Checkpoint, load_checkpoint, save_checkpoint, save_space
from dwscli.weights.metadata import (
    METADATA_ACTIVATION_KEY,
    METADATA_OPTION_KEYS,
    METADATA_SPEC_KEY,
    PROVENANCE_PREFIX,
)

__all__ = [
    "KEY_STYLES",
    "METADATA_ACTIVATION_KEY",
    "METADATA_OPTION_KEYS",
    "METADATA_SPEC_KEY",
    "PROVENANCE_PREFIX",
    "SAFETENSORS_SUFFIX",
    "TORCH_SUFFIXES",
    "Checkpoint",
    "CheckpointLayout",
    "LayerLayout",
    "load_checkpoint",
    "natural_key",
    "save_checkpoint",
    "save_space",
]
