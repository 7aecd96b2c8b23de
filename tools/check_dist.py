#!/usr/bin/env python3
"""Check the release artefacts in a folder (``make dist`` runs it).

For every wheel: ``auditwheel show`` must find it consistent with manylinux_2_17 (glibc
2.17) or older, so a wheel that needs a newer glibc fails the build; its files must
include every module of ``python/ferroloop``, the native module, ``_ferroloop.pyi``,
``py.typed`` and the license files. The sdist must hold the sources and licenses.
``twine check`` must accept everything (the long description renders).
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import tarfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
NEWEST_GLIBC = (2, 17)
LICENSES = ("LICENSE-MIT", "LICENSE-APACHE")


def check_wheel(wheel: pathlib.Path, tools: pathlib.Path) -> list[str]:
    problems = []
    show = subprocess.run(
        [tools / "auditwheel", "show", str(wheel)], capture_output=True, text=True, check=False
    )
    text = " ".join(show.stdout.split())
    match = re.search(r'consistent with the following platform tag: "manylinux_(\d+)_(\d+)_', text)
    if show.returncode != 0 or not match:
        problems.append(f"{wheel.name}: auditwheel show failed: {show.stdout}{show.stderr}")
    elif (int(match[1]), int(match[2])) > NEWEST_GLIBC:
        problems.append(f"{wheel.name}: needs glibc {match[1]}.{match[2]} (> 2.17)")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    wanted = [f"ferroloop/{p.name}" for p in (ROOT / "python/ferroloop").glob("*.py")]
    wanted += ["ferroloop/_ferroloop.pyi", "ferroloop/py.typed"]
    for name in wanted:
        if name not in names:
            problems.append(f"{wheel.name}: {name} is missing")
    if not any(
        re.fullmatch(r"ferroloop/_ferroloop\.cpython-3\d+-x86_64-linux-gnu\.so", n) for n in names
    ):
        problems.append(f"{wheel.name}: the native module is missing")
    for lic in LICENSES:
        if not any(n.endswith(lic) and ".dist-info/" in n for n in names):
            problems.append(f"{wheel.name}: {lic} is missing from its dist-info")
    return problems


def check_sdist(sdist: pathlib.Path) -> list[str]:
    with tarfile.open(sdist) as tar:
        names = tar.getnames()
    problems = []
    for need in (
        "Cargo.toml",
        "Cargo.lock",
        "pyproject.toml",
        "src/lib.rs",
        "python/ferroloop/__init__.py",
        "python/ferroloop/_ferroloop.pyi",
        *LICENSES,
    ):
        if not any(n.split("/", 1)[-1] == need for n in names):
            problems.append(f"{sdist.name}: {need} is missing")
    return problems


def main() -> int:
    dist = pathlib.Path(sys.argv[1])
    tools = ROOT / ".venv-dist/bin"
    wheels = sorted(dist.glob("ferroloop-*.whl"))
    sdists = sorted(dist.glob("ferroloop-*.tar.gz"))
    problems = []
    for wheel in wheels:
        problems += check_wheel(wheel, tools)
    for sdist in sdists:
        problems += check_sdist(sdist)
    if not wheels or not sdists:
        problems.append(f"expected wheels and an sdist in {dist}")
    twine = subprocess.run(
        [tools / "twine", "check", "--strict", *map(str, wheels + sdists)],
        capture_output=True,
        text=True,
        check=False,
    )
    if twine.returncode != 0:
        problems.append("twine check: " + twine.stdout + twine.stderr)
    for artefact in wheels + sdists:
        print(f"  {artefact.name}  {artefact.stat().st_size / 1024:.0f} KiB")
    for p in problems:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
