"""``python -m ferroloop SCRIPT.py [ARGS]`` (run in subprocesses).

The asyncio counterpart of ``python -m ferroloop X`` is ``python X``: the same script
must see the same sys.argv, ``__name__`` and exit status; only the loop type differs.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
from ferro_testutil import run_python

SCRIPT = textwrap.dedent(
    """
    import asyncio
    import sys

    async def main():
        loop = asyncio.get_running_loop()
        print("LOOP", type(loop).__module__ + "." + type(loop).__qualname__)
        print("ARGV", sys.argv)
        print("NAME", __name__)
        return 0

    if __name__ == "__main__":
        asyncio.run(main())
    """
)


@pytest.fixture
def script(tmp_path):
    """A script that prints its running loop's type, sys.argv and __name__."""
    path = tmp_path / "show_loop.py"
    path.write_text(SCRIPT)
    return str(path)


def _parse(stdout: str) -> dict[str, str]:
    out = {}
    for line in stdout.splitlines():
        key, _, value = line.partition(" ")
        out[key] = value
    return out


def test_script_runs_on_impl_loop(impl, script):
    proc = run_python(impl.script_command(script, "arg1", "--flag", "x y"))
    assert proc.returncode == 0, proc.stderr
    info = _parse(proc.stdout)
    expected_cls = f"{impl.loop_class.__module__}.{impl.loop_class.__qualname__}"
    if impl.name == "asyncio":
        expected_cls = "asyncio.unix_events._UnixSelectorEventLoop"
    assert info["LOOP"] == expected_cls
    assert info["ARGV"] == repr([script, "arg1", "--flag", "x y"])
    assert info["NAME"] == "__main__"


def test_script_exit_status(impl, tmp_path):
    path = tmp_path / "exits.py"
    path.write_text("import sys\nsys.exit(3)\n")
    proc = run_python(impl.script_command(str(path)))
    assert proc.returncode == 3


def test_script_exception_traceback(impl, tmp_path):
    path = tmp_path / "fails.py"
    path.write_text(
        "import asyncio\n"
        "async def main():\n"
        "    raise ValueError('script failed')\n"
        "asyncio.run(main())\n"
    )
    proc = run_python(impl.script_command(str(path)))
    assert proc.returncode == 1
    assert proc.stderr.rstrip().endswith("ValueError: script failed")


def test_script_directory_is_on_sys_path(impl, tmp_path):
    """Like ``python dir/script.py``, the script's directory is importable (cwd elsewhere)."""
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    (scripts / "helper_mod.py").write_text("VALUE = 'helper'\n")
    path = scripts / "uses_helper.py"
    path.write_text("import helper_mod\nprint(helper_mod.VALUE)\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_python(impl.script_command(str(path)), cwd=str(elsewhere))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "helper"


def test_dash_m_module(impl, tmp_path):
    (tmp_path / "show_mod.py").write_text(SCRIPT)
    if impl.name == "asyncio":
        cmd = [sys.executable, "-m", "show_mod", "a"]
    else:
        cmd = [sys.executable, "-m", "ferroloop", "-m", "show_mod", "a"]
    proc = run_python(cmd, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    info = _parse(proc.stdout)
    assert info["NAME"] == "__main__"
    assert eval(info["ARGV"])[1:] == ["a"]
    assert eval(info["ARGV"])[0].endswith("show_mod.py")
    if impl.name == "ferroloop":
        assert info["LOOP"] == f"{impl.loop_class.__module__}.{impl.loop_class.__qualname__}"


def test_no_arguments_prints_usage(ferroloop_only):
    proc = run_python([sys.executable, "-m", "ferroloop"])
    assert proc.returncode == 2
    assert "usage" in proc.stderr.lower()


def test_help(ferroloop_only):
    proc = run_python([sys.executable, "-m", "ferroloop", "--help"])
    assert proc.returncode == 0
    assert "usage" in proc.stdout.lower()


def test_missing_script(ferroloop_only, tmp_path):
    proc = run_python([sys.executable, "-m", "ferroloop", str(tmp_path / "nope.py")])
    assert proc.returncode != 0
    assert proc.stdout == ""
