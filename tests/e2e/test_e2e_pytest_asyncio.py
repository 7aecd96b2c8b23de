"""pytest-asyncio running a project's tests on ferroloop (and, as the reference, on asyncio).

Each case writes a tiny project -- ``pytest.ini``, a ``conftest.py`` that selects the loop,
and a test module -- into a temporary folder and runs ``python -m pytest`` on it in a
subprocess.  The test module asserts, inside its async tests and async fixtures, the class
of the running loop; it also uses streams, the executor, ``asyncio.timeout`` and a
module-scoped loop shared by two tests.  Three ways of selecting the loop are checked:

``hook``
    the ``pytest_asyncio_loop_factories`` hook (pytest-asyncio >= 1.4, the recommended way);
``policy_fixture``
    overriding the ``event_loop_policy`` fixture (pytest-asyncio 0.23 - 1.x; deprecated
    since 1.4 in favour of the hook);
``install``
    ``ferroloop.install()`` (sets the global policy) in ``pytest_configure``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

pytest_asyncio = pytest.importorskip("pytest_asyncio", reason=NEED.format("pytest_asyncio"))

from e2e_util import python_env

#: impl name -> (the loop's class as the test sees it, factory expr, policy expr)
LOOPS = {
    "asyncio": (
        "asyncio.unix_events._UnixSelectorEventLoop",
        "asyncio.SelectorEventLoop",
        "asyncio.DefaultEventLoopPolicy()",
    ),
    "ferroloop": (
        "ferroloop.loop.Loop",
        "ferroloop.new_event_loop",
        "ferroloop.EventLoopPolicy()",
    ),
}

CONFTESTS = {
    "hook": """
        import asyncio
        import ferroloop


        def pytest_asyncio_loop_factories(config, item):
            return {"loop": FACTORY}
    """,
    "policy_fixture": """
        import asyncio
        import ferroloop
        import pytest


        @pytest.fixture(scope="session")
        def event_loop_policy():
            return POLICY
    """,
    "install": """
        import asyncio
        import ferroloop


        def pytest_configure(config):
            asyncio.set_event_loop_policy(POLICY)


        def pytest_unconfigure(config):
            asyncio.set_event_loop_policy(None)
    """,
}

TEST_MODULE = """
    import asyncio
    import os
    import threading

    import pytest
    import pytest_asyncio

    EXPECTED = os.environ["E2E_EXPECTED_LOOP"]


    def loop_name():
        loop = asyncio.get_running_loop()
        return f"{type(loop).__module__}.{type(loop).__qualname__}"


    @pytest_asyncio.fixture
    async def echo_port():
        assert loop_name() == EXPECTED

        async def handle(reader, writer):
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        yield server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()


    @pytest.mark.asyncio
    async def test_loop_class():
        assert loop_name() == EXPECTED
        assert asyncio.get_event_loop() is asyncio.get_running_loop()


    @pytest.mark.asyncio
    async def test_streams(echo_port):
        reader, writer = await asyncio.open_connection("127.0.0.1", echo_port)
        writer.write(b"hello\\n")
        assert await reader.readline() == b"HELLO\\n"
        writer.close()
        await writer.wait_closed()


    @pytest.mark.asyncio
    async def test_executor_and_timeout():
        loop = asyncio.get_running_loop()
        name = await loop.run_in_executor(None, lambda: threading.current_thread().name)
        assert name != threading.main_thread().name
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)


    @pytest_asyncio.fixture(loop_scope="module", scope="module")
    async def module_loop():
        assert loop_name() == EXPECTED
        return asyncio.get_running_loop()


    @pytest.mark.asyncio(loop_scope="module")
    async def test_module_loop_first(module_loop):
        assert asyncio.get_running_loop() is module_loop


    @pytest.mark.asyncio(loop_scope="module")
    async def test_module_loop_second(module_loop):
        assert asyncio.get_running_loop() is module_loop
        assert loop_name() == EXPECTED


    def test_sync_test_gets_no_running_loop():
        with pytest.raises(RuntimeError):
            asyncio.get_running_loop()
"""

PYTEST_INI = """
    [pytest]
    asyncio_mode = strict
    asyncio_default_fixture_loop_scope = function
    filterwarnings =
        error::pytest.PytestUnraisableExceptionWarning
        error::ResourceWarning
        ignore:Overriding the "event_loop_policy" fixture is deprecated
        ignore:.*(get|set)_event_loop_policy.*:DeprecationWarning
"""


def _version() -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", pytest_asyncio.__version__)[:2])


@pytest.mark.parametrize("how", list(CONFTESTS))
def test_project_runs_on_the_loop(impl, tmp_path, how) -> None:
    if how == "hook" and _version() < (1, 4):
        pytest.skip(f"pytest_asyncio_loop_factories needs pytest-asyncio >= 1.4, "
                    f"not {pytest_asyncio.__version__}")  # fmt: skip
    expected, factory, policy = LOOPS[impl.name]
    conftest = textwrap.dedent(CONFTESTS[how]).replace("FACTORY", factory)
    (tmp_path / "conftest.py").write_text(conftest.replace("POLICY", policy))
    (tmp_path / "test_project.py").write_text(textwrap.dedent(TEST_MODULE))
    (tmp_path / "pytest.ini").write_text(textwrap.dedent(PYTEST_INI))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE",
         "-p", "no:anyio", str(tmp_path)],
        cwd=tmp_path, env=python_env(E2E_EXPECTED_LOOP=expected),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert re.search(r"\b6 passed\b", output), output[-4000:]
