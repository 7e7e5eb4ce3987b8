"""Processors: trained weight-space networks, each a ``<name>.yaml`` card and
``<name>.safetensors`` weights (the shipped ones live in this folder), and the jobs that run
them over checkpoint files (:mod:`~dwscli.processors.pipeline`)."""

from __future__ import annotations

from dwscli.processors.card import ProcessorCard
from dwscli.processors.registry import (
    default_processor,
    find_processor,
    fitting_processors,
    list_processors,
    load_card,
)

__all__ = [
    "ProcessorCard",
    "default_processor",
    "find_processor",
    "fitting_processors",
    "list_processors",
    "load_card",
]
