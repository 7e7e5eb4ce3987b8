"""Pictures are part of the core install: every command that writes one works with the core
dependencies of pyproject.toml alone, and no module of dwscli imports a library outside them.

The core set is what ``pip install -e .`` installs: ``[project] dependencies`` and, recursively,
their own requirements (extras left out). The commands run in a fresh interpreter, so the
libraries they load are exactly the ones they need.
"""

from __future__ import annotations

import ast
import contextlib
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import safetensors.torch
from packaging.requirements import Requirement
from PIL import Image

from dwscli.examples import example_path

REPO = Path(__file__).resolve().parents[2]
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def core_distributions() -> set[str]:
    """The distributions ``pip install .`` brings: core requirements and theirs, no extras."""
    with open(REPO / "pyproject.toml", "rb") as fh:
        pending = list(tomllib.load(fh)["project"]["dependencies"])
    found: set[str] = set()
    while pending:
        requirement = Requirement(pending.pop())
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = _canonical(requirement.name)
        if name in found:
            continue
        found.add(name)
        with contextlib.suppress(metadata.PackageNotFoundError):  # not for this platform
            pending.extend(metadata.requires(name) or [])
    return found


def distributions_of(modules: set[str]) -> dict[str, set[str]]:
    """``module -> distributions`` of third-party top-level modules (no stdlib, no dwscli)."""
    providers = metadata.packages_distributions()
    mapped = {
        module: {_canonical(d) for d in providers.get(module, [module])}
        for module in modules
        # __editable__…finder: the import hook of an editable install of dwscli itself
        if module not in sys.stdlib_module_names and not module.startswith("__editable__")
    }
    return {module: dists for module, dists in mapped.items() if "dwscli" not in dists}


def test_core_dependencies_hold_the_picture_libraries() -> None:
    core = core_distributions()
    assert {"pillow", "matplotlib", "scikit-learn", "scipy"} <= core


def _imported_modules(source: Path) -> set[str]:
    """Top-level modules a file imports, leaving out fallbacks in ``except`` clauses (an import
    that only runs when the preferred one is missing, e.g. for an older library version)."""
    tree = ast.parse(source.read_text(), filename=str(source))
    fallbacks = {
        id(node)
        for handler in ast.walk(tree)
        if isinstance(handler, ast.ExceptHandler)
        for node in ast.walk(handler)
    }
    modules = set()
    for node in ast.walk(tree):
        if id(node) in fallbacks:
            continue
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def test_every_library_dwscli_imports_is_a_core_dependency() -> None:
    modules = set().union(*map(_imported_modules, (REPO / "dwscli").rglob("*.py")))
    core = core_distributions()
    outside = {m: d for m, d in distributions_of(modules).items() if not d & core}
    assert not outside, f"dwscli imports libraries that are not core dependencies: {outside}"


PICTURE_COMMANDS = """
import json, sys
from dwscli.cli.app import main
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit as exit:
        assert exit.code in (0, None), (argv, exit.code)
# where each loaded module's file lies: the top-level name under site-packages
import site
from pathlib import Path
roots = [Path(p).resolve() for p in (*site.getsitepackages(), site.getusersitepackages())]
tops = set()
for module in list(sys.modules.values()):
    file = getattr(module, "__file__", None)
    for root in roots if file else ():
        if Path(file).resolve().is_relative_to(root):
            tops.add(Path(file).resolve().relative_to(root).parts[0].split(".")[0])
print("MODULES=" + json.dumps(sorted(tops)))
"""


def _sine_inrs(folder: Path, scales: list[float]) -> list[Path]:
    """The shipped sine SIREN with its output scaled: the INRs of a·3·sin(2x), distinct nets."""
    source = example_path("sine-inr")
    tensors = safetensors.torch.load_file(source)
    with safetensors.safe_open(source, "pt") as fh:
        meta = fh.metadata()
    last = sorted(k for k in tensors if k.endswith("weight"))[-1]
    folder.mkdir()
    paths = []
    for k, scale in enumerate(scales):
        scaled = dict(tensors)
        scaled[last] = tensors[last] * scale
        path = folder / f"sine{k}.safetensors"
        safetensors.torch.save_file(scaled, path, metadata=meta)
        paths.append(path)
    return paths


def test_picture_commands_work_with_core_dependencies_only(tmp_path: Path) -> None:
    sines = _sine_inrs(tmp_path / "sines", [0.5, 1.0, 1.5, 2.0])
    seven, grid, tsne = tmp_path / "seven.png", tmp_path / "grid.png", tmp_path / "tsne.png"
    edit = ["edit", "example:mnist-inr", "--op", "dilate"]
    commands = [
        ["render", "example:mnist-inr", "-o", str(seven)],
        [*edit, "-o", str(tmp_path / "dilated.safetensors")],
        [*edit, "--out-dir", str(tmp_path / "edited"), "--preview", str(grid)],
        ["embed", *map(str, sines), "-o", str(tmp_path / "emb.npy"), "--plot", str(tsne)],
    ]
    result = subprocess.run(
        [sys.executable, "-c", PICTURE_COMMANDS, json.dumps(commands)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "hint: pip install" not in result.stderr
    for picture in (seven, grid, tsne):
        with Image.open(picture) as image:
            assert image.format == "PNG" and min(image.size) >= 28, (picture, image.size)
    with Image.open(seven) as image:
        assert image.size == (112, 112)  # 28x28 at the default scale 4
    modules = set(json.loads(result.stdout.split("MODULES=")[-1]))  # under site-packages
    assert {"PIL", "matplotlib", "sklearn"} <= modules  # the commands really drew
    core = core_distributions()
    outside = {m: d for m, d in distributions_of(modules).items() if not d & core}
    assert not outside, f"picture commands loaded libraries outside the core set: {outside}"
