"""What `make test` runs against is the installed wheel, not the source tree.

With ``FERROLOOP_EXPECT_INSTALLED=1`` (set by ``make test-one``), ferroloop must be
imported from the venv's site-packages (a regular, non-editable install of the built
wheel), with every module, the ``.pyi`` stub, ``py.typed`` and the license files that
the source tree has, and with no Rust toolchain on PATH. Without the variable (a
developer's ``maturin develop`` build) these checks are skipped.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

SOURCE = pathlib.Path(__file__).resolve().parent.parent / "python" / "ferroloop"

pytestmark = pytest.mark.skipif(
    os.environ.get("FERROLOOP_EXPECT_INSTALLED") != "1",
    reason="checks the installed wheel (set FERROLOOP_EXPECT_INSTALLED=1, as make test does)",
)


def test_imported_from_site_packages_not_the_source_tree():
    import ferroloop

    package = pathlib.Path(ferroloop.__file__).resolve().parent
    site = pathlib.Path(sysconfig.get_paths()["purelib"]).resolve()
    assert package.parent == site, package
    assert not package.is_relative_to(SOURCE.parent)
    native = pathlib.Path(ferroloop._ferroloop.__file__).resolve()
    assert native.parent == package


def test_wheel_has_every_file_of_the_package():
    import ferroloop

    package = pathlib.Path(ferroloop.__file__).resolve().parent
    for source in SOURCE.glob("*.py"):
        assert (package / source.name).is_file(), source.name
    assert (package / "_ferroloop.pyi").is_file()
    assert (package / "py.typed").is_file()
    dist = importlib.metadata.distribution("ferroloop")
    files = {str(f) for f in dist.files or ()}
    assert not any(f.endswith(".pth") for f in files), "an editable install"
    assert any(f.endswith("LICENSE-MIT") for f in files)
    assert any(f.endswith("LICENSE-APACHE") for f in files)


def test_no_rust_toolchain_on_path():
    assert shutil.which("cargo") is None
    assert shutil.which("rustc") is None


def test_version_is_the_distribution_version():
    import ferroloop

    assert ferroloop.__version__ == importlib.metadata.version("ferroloop")
    out = subprocess.run(
        [sys.executable, "-m", "ferroloop", "--version"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(f"ferroloop {ferroloop.__version__} (CPython ")
