"""psqlpy (a PostgreSQL driver in Rust, on tokio and pyo3-async-runtimes) against the real server.

psqlpy runs its I/O on its own tokio runtime and hands results to the loop through
pyo3-async-runtimes (``loop.create_future``, ``loop.call_soon_threadsafe`` from tokio
threads). Covered on the loop under test: a TLS pool under 2,000 concurrent queries,
transactions, a query cancelled in flight by ``task.cancel()`` (the pool serves on), and
``asyncio.wait_for`` timing out on a slow query.
"""

from __future__ import annotations

import asyncio
import pathlib

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

psqlpy = pytest.importorskip("psqlpy", reason=NEED.format("psqlpy"))


@pytest.fixture
def pool_kwargs(postgres, tmp_path: pathlib.Path) -> dict:
    """Connection settings of the session's server: TLS checked against its CA when it has one."""
    kwargs = {
        "host": postgres.host,
        "port": postgres.port,
        "username": postgres.user,
        "db_name": postgres.database,
        "connect_timeout_sec": 10,
    }
    if postgres.ca_pem:
        ca_file = tmp_path / "ca.pem"
        ca_file.write_text(postgres.ca_pem)
        kwargs.update(ssl_mode=psqlpy.SslMode.VerifyFull, ca_file=str(ca_file))
    else:
        kwargs.update(ssl_mode=psqlpy.SslMode.Disable)
    return kwargs


async def active_backends(monitor, marker: str) -> list[int]:
    """The pids of the server sessions running a query that contains ``marker``."""
    rows = await monitor.fetch(
        "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE $1"
        " AND pid <> pg_backend_pid()",
        [f"%{marker}%"],
    )
    return [row["pid"] for row in rows.result()]


async def wait_active(monitor, marker: str) -> list[int]:
    """Wait until a session runs the query with ``marker``."""
    for _ in range(500):
        pids = await active_backends(monitor, marker)
        if pids:
            return pids
        await asyncio.sleep(0.01)
    raise AssertionError(f"no session runs the query marked {marker!r}")


async def cancel_backends(monitor, marker: str) -> None:
    """Cancel, server-side, the queries still running with ``marker`` and wait until gone.

    Cancelling the Python awaitable drops psqlpy's Rust future; the query itself runs on
    in the server, and its pooled connection answers nothing else until it ends.
    """
    for _ in range(500):
        pids = await active_backends(monitor, marker)
        if not pids:
            return
        for pid in pids:
            await monitor.execute("SELECT pg_cancel_backend($1)", [pid])
        await asyncio.sleep(0.01)
    raise AssertionError(f"queries marked {marker!r} still run")


def test_pool_2000_queries(impl, run_on, pool_kwargs, postgres) -> None:
    async def main() -> None:
        pool = psqlpy.ConnectionPool(max_db_pool_size=10, **pool_kwargs)
        try:

            async def query(i: int) -> int:
                async with pool.acquire() as conn:
                    return await conn.fetch_val("SELECT $1::int * 2", [i])

            got = await asyncio.gather(*(query(i) for i in range(2000)))
            assert got == [2 * i for i in range(2000)]
            status = pool.status()
            assert status.max_size == 10 and status.size <= 10

            async with pool.acquire() as conn:
                if postgres.ca_pem:
                    tls = await conn.fetch_val(
                        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                    )
                    assert tls is True
                res = await conn.fetch(
                    "SELECT n, repeat('x', n) AS s, n::float8 / 4 AS f, n % 2 = 0 AS even"
                    " FROM generate_series(1, $1::int) AS n",
                    [100],
                )
                rows = res.result()
                assert [r["n"] for r in rows] == list(range(1, 101))
                assert all(r["s"] == "x" * r["n"] and r["f"] == r["n"] / 4 for r in rows)
                assert [r["even"] for r in rows[:4]] == [False, True, False, True]
                data = bytes(range(256)) * 64
                assert await conn.fetch_val("SELECT $1::bytea", [data]) == data
                with pytest.raises(psqlpy.exceptions.ConnectionExecuteError, match="by zero"):
                    await conn.execute("SELECT 1 / 0")
                assert await conn.fetch_val("SELECT 'still usable'") == "still usable"
        finally:
            pool.close()

    run_on(main)


def test_transactions(impl, run_on, pool_kwargs) -> None:
    name = f"psqlpy_accounts_{impl.name}"

    async def main() -> None:
        pool = psqlpy.ConnectionPool(max_db_pool_size=2, **pool_kwargs)
        try:
            async with pool.acquire() as conn:
                await conn.execute(f"DROP TABLE IF EXISTS {name}")
                await conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, balance int)")
                await conn.execute_many(
                    f"INSERT INTO {name} VALUES ($1, $2)", [[i, 100] for i in range(10)]
                )
                async with conn.transaction() as tx:
                    await tx.execute(f"UPDATE {name} SET balance = balance - 30 WHERE id = 0")
                    await tx.execute(f"UPDATE {name} SET balance = balance + 30 WHERE id = 1")
                with pytest.raises(ZeroDivisionError):
                    async with conn.transaction() as tx:
                        await tx.execute(f"UPDATE {name} SET balance = 0")
                        raise ZeroDivisionError  # rolls the transaction back
                res = await conn.fetch(f"SELECT id, balance FROM {name} ORDER BY id")
                assert [r["balance"] for r in res.result()] == [70, 130] + [100] * 8
                await conn.execute(f"DROP TABLE {name}")
        finally:
            pool.close()

    run_on(main)


def test_cancel_in_flight_query(impl, run_on, pool_kwargs) -> None:
    marker = f"ferro_cancel_{impl.name}"

    async def main() -> None:
        pool = psqlpy.ConnectionPool(max_db_pool_size=4, **pool_kwargs)
        monitor = await psqlpy.connect(**pool_kwargs)  # outside the pool
        try:

            async def slow() -> None:
                async with pool.acquire() as conn:
                    await conn.execute(f"SELECT pg_sleep(30) /* {marker} */")

            task = asyncio.create_task(slow())
            await wait_active(monitor, marker)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert task.cancelled()
            await cancel_backends(monitor, marker)
            # The pool serves on, on every connection (the one of the cancelled query too).
            got = await asyncio.gather(
                *(pool_query(pool, "SELECT $1::int + 1", [i]) for i in range(200))
            )
            assert got == [i + 1 for i in range(200)]
        finally:
            monitor.close()
            pool.close()

    run_on(main)


def test_wait_for_slow_query_times_out(impl, run_on, pool_kwargs) -> None:
    marker = f"ferro_timeout_{impl.name}"

    async def main() -> None:
        pool = psqlpy.ConnectionPool(max_db_pool_size=4, **pool_kwargs)
        monitor = await psqlpy.connect(**pool_kwargs)  # outside the pool
        try:
            async with pool.acquire() as conn:
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(conn.execute(f"SELECT pg_sleep(30) /* {marker} */"), 0.2)
                assert 0.15 <= loop.time() - started < 5
            await cancel_backends(monitor, marker)
            # A query that finishes in time is not disturbed by the timeout.
            assert await asyncio.wait_for(pool_query(pool, "SELECT 42"), 10) == 42
            got = await asyncio.gather(
                *(pool_query(pool, "SELECT $1::int", [i]) for i in range(20))
            )
            assert got == list(range(20))
        finally:
            monitor.close()
            pool.close()

    run_on(main)


async def pool_query(pool, sql: str, params: list | None = None):
    async with pool.acquire() as conn:
        return await conn.fetch_val(sql, params)
