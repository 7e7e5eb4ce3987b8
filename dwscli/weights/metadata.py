"""The metadata level of checkpoints: which keys dws reads and writes, and the spec they give.

Metadata keys (all strings) that dws reads and writes:

``dws.spec``
    full spec string such as ``2-32-32-1:sine;w0=30``; wins over everything else on load.
``activation`` (+ ``w0``, ``w0_hidden``, ``negative_slope``)
    the plain-key way other tools record the activation and its options (names and aliases from
    :mod:`dwscli.weights.activations`).
``dws.version``, ``dws.source`` and ``dws.<anything>`` from ``provenance``
    written by :func:`~dwscli.weights.checkpoint.save_checkpoint` / ``save_space``.

Metadata is untrusted input: a value is only ever shown escaped (see the CLI) and parsed by the
spec's own checks (finite numbers, bounded widths).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dwscli.errors import DwsError
from dwscli.weights.activations import ACTIVATIONS, NUMERIC_OPTIONS, canonical_activation
from dwscli.weights.spec import MLPSpec

METADATA_SPEC_KEY = "dws.spec"
METADATA_ACTIVATION_KEY = "activation"
#: Plain metadata keys that become spec options when ``dws.spec`` is absent (all numeric).
METADATA_OPTION_KEYS = NUMERIC_OPTIONS
PROVENANCE_PREFIX = "dws."


def parse_activation(text: str, where: str) -> tuple[str, dict[str, str]]:
    """``"sine"`` or ``"sine;w0=30"`` -> ``("sine", {"w0": "30"})``, with common aliases."""
    first, *rest = (part.strip() for part in text.split(";"))
    name = canonical_activation(first)
    if name is None:
        raise DwsError(
            f"{where}: unknown activation {text.split(';')[0].strip()!r}",
            hint=f"choose one of {', '.join(ACTIVATIONS)}",
        )
    options: dict[str, str] = {}
    for item in rest:
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise DwsError(f"{where}: cannot read activation option {item!r} (write key=value)")
        options[key.strip()] = value.strip()
    return name, options


def resolve_spec(
    path: Path, widths: tuple[int, ...], metadata: Mapping[str, str], activation: str | None
) -> tuple[MLPSpec, str]:
    requested = parse_activation(activation, "activation argument") if activation else None

    if METADATA_SPEC_KEY in metadata:
        text = metadata[METADATA_SPEC_KEY]
        try:
            spec = MLPSpec.parse(text)
        except DwsError as exc:
            raise DwsError(f"{path}: metadata {METADATA_SPEC_KEY} = {text!r}: {exc}") from exc
        if spec.widths != widths:
            raise DwsError(
                f"{path}: metadata {METADATA_SPEC_KEY} = {text!r} says widths "
                f"{'-'.join(map(str, spec.widths))} but the tensors give "
                f"{'-'.join(map(str, widths))}"
            )
        source = f"metadata:{METADATA_SPEC_KEY}"
    else:
        options: dict[str, str] = {}
        for key in METADATA_OPTION_KEYS:
            if key in metadata:
                try:
                    float(metadata[key])
                except ValueError:
                    raise DwsError(
                        f"{path}: metadata {key} = {metadata[key]!r} is not a number"
                    ) from None
                options[key] = metadata[key].strip()
        if METADATA_ACTIVATION_KEY in metadata:
            name, extra = parse_activation(
                metadata[METADATA_ACTIVATION_KEY], f"{path}: metadata {METADATA_ACTIVATION_KEY}"
            )
            options = {**extra, **options}
            source = f"metadata:{METADATA_ACTIVATION_KEY}"
        elif requested is not None:
            name, extra = requested
            for key, value in extra.items():
                if key in options and options[key] != value:
                    raise DwsError(
                        f"{path}: metadata says {key}={options[key]} but {key}={value} was "
                        "requested"
                    )
            options = {**options, **extra}
            source = "argument"
        else:
            name, source = "relu", "default"
        try:
            spec = MLPSpec(widths, name, tuple(options.items()))
        except DwsError as exc:
            raise DwsError(f"{path}: {exc}") from exc

    if requested is not None and source.startswith("metadata"):
        name, extra = requested
        clash = [k for k, v in extra.items() if spec.option(k) not in (None, v)]
        if name != spec.activation or clash:
            raise DwsError(
                f"{path}: the file's metadata ({source.removeprefix('metadata:')}) says "
                f"{spec.activation}{''.join(f';{k}={spec.option(k)}' for k in clash)} "
                f"but {activation!r} was requested",
                hint="drop the activation option; it only fills in what the file does not say",
            )
    return spec, source


def provenance_metadata(provenance: Mapping[str, object] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (provenance or {}).items():
        name = str(key)
        out[name if name.startswith(PROVENANCE_PREFIX) else PROVENANCE_PREFIX + name] = str(value)
    return out
