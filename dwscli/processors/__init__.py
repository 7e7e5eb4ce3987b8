"""Shipped pretrained processors: ``<name>.safetensors`` + ``<name>.yaml`` card in this folder."""

from __future__ import annotations

from dwscli.processors.registry import (
    ProcessorCard,
    find_processor,
    fitting_processors,
    list_processors,
    load_card,
)

__all__ = ["ProcessorCard", "find_processor", "fitting_processors", "list_processors", "load_card"]
