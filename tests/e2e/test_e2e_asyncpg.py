"""asyncpg against a real PostgreSQL server (started by the ``postgres`` session fixture).

A pool serving 1,000 concurrent queries, transactions with savepoints, LISTEN/NOTIFY,
query cancellation on timeout (asyncpg cancels through a second connection), COPY,
server-side cursors and the common type codecs -- on the loop under test.
"""

from __future__ import annotations

import asyncio
import datetime
import decimal
import io
import json
import ssl
import uuid

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

asyncpg = pytest.importorskip("asyncpg", reason=NEED.format("asyncpg"))


def table(impl, name: str) -> str:
    """A table name of this test and loop (both loops share the session's database)."""
    return f"{name}_{impl.name}"


def test_pool_1000_queries(impl, run_on, postgres) -> None:
    async def main() -> None:
        async with asyncpg.create_pool(postgres.dsn, min_size=2, max_size=10) as pool:

            async def query(i: int) -> int:
                return await pool.fetchval("SELECT $1::int * 2", i)

            got = await asyncio.gather(*(query(i) for i in range(1000)))
            assert got == [2 * i for i in range(1000)]
            assert pool.get_size() <= 10
            # acquire/release by hand, with a prepared statement per connection.
            async with pool.acquire() as conn:
                stmt = await conn.prepare("SELECT generate_series(1, $1::int) AS n")
                rows = await stmt.fetch(100)
                assert [r["n"] for r in rows] == list(range(1, 101))
            rows = await pool.fetch("SELECT pg_backend_pid() AS pid FROM generate_series(1, 3)")
            assert len(rows) == 3

    run_on(main)


def test_transactions(impl, run_on, postgres) -> None:
    name = table(impl, "accounts")

    async def main() -> None:
        conn = await asyncpg.connect(postgres.dsn)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
            await conn.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, balance int NOT NULL)")
            await conn.executemany(
                f"INSERT INTO {name} VALUES ($1, $2)", [(i, 100) for i in range(10)]
            )
            # A committed transfer, with a savepoint that is rolled back inside it.
            async with conn.transaction():
                await conn.execute(f"UPDATE {name} SET balance = balance - 30 WHERE id = 0")
                await conn.execute(f"UPDATE {name} SET balance = balance + 30 WHERE id = 1")
                with pytest.raises(asyncpg.UniqueViolationError):
                    async with conn.transaction():  # a savepoint
                        await conn.execute(f"UPDATE {name} SET balance = 0 WHERE id = 2")
                        await conn.execute(f"INSERT INTO {name} VALUES (3, 1)")
            # A failed transaction leaves nothing behind.
            with pytest.raises(ZeroDivisionError):
                async with conn.transaction():
                    await conn.execute(f"UPDATE {name} SET balance = 0")
                    raise ZeroDivisionError
            rows = await conn.fetch(f"SELECT id, balance FROM {name} ORDER BY id")
            assert [tuple(r) for r in rows] == [(0, 70), (1, 130)] + [
                (i, 100) for i in range(2, 10)
            ]
            # Explicit start/rollback, and isolation level.
            tr = conn.transaction(isolation="serializable")
            await tr.start()
            await conn.execute(f"DELETE FROM {name}")
            await tr.rollback()
            assert await conn.fetchval(f"SELECT count(*) FROM {name}") == 10
            await conn.execute(f"DROP TABLE {name}")
        finally:
            await conn.close()

    run_on(main)


def test_listen_notify(run_on, postgres) -> None:
    async def main() -> None:
        listener = await asyncpg.connect(postgres.dsn)
        sender = await asyncpg.connect(postgres.dsn)
        try:
            got: asyncio.Queue = asyncio.Queue()

            def on_notify(conn, pid, channel, payload) -> None:
                assert asyncio.get_running_loop() is not None
                got.put_nowait((channel, payload))

            await listener.add_listener("ferro_events", on_notify)
            for i in range(200):
                await sender.execute("SELECT pg_notify('ferro_events', $1)", f"event {i}")
            # NOTIFY in a transaction is delivered at commit, all at once.
            async with sender.transaction():
                for i in range(200, 300):
                    await sender.execute(f"NOTIFY ferro_events, 'event {i}'")
            received = [await asyncio.wait_for(got.get(), 10) for _ in range(300)]
            assert received == [("ferro_events", f"event {i}") for i in range(300)]
            await listener.remove_listener("ferro_events", on_notify)
            await sender.execute("NOTIFY ferro_events, 'ignored'")
            await asyncio.sleep(0.1)
            assert got.empty()
        finally:
            await asyncio.gather(listener.close(), sender.close())

    run_on(main)


def test_timeout_cancels_query(run_on, postgres) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(postgres.dsn)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(asyncio.TimeoutError):
                await conn.execute("SELECT pg_sleep(10)", timeout=0.3)
            assert loop.time() - start < 5
            # The server really cancelled it; the connection is usable again.
            assert await conn.fetchval("SELECT 41 + 1") == 42
            # Cancelling the awaiting task has the same effect.
            task = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(10)"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await conn.fetchval("SELECT 'ok'") == "ok"
        finally:
            await conn.close()

    run_on(main)


def test_copy_and_cursor(impl, run_on, postgres) -> None:
    name = table(impl, "copied")

    async def main() -> None:
        conn = await asyncpg.connect(postgres.dsn)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {name}")
            await conn.execute(f"CREATE TABLE {name} (n int, label text)")
            records = [(i, f"row {i}") for i in range(20_000)]
            result = await conn.copy_records_to_table(name, records=records)
            assert result == "COPY 20000"
            out = io.BytesIO()
            await conn.copy_from_query(
                f"SELECT n, label FROM {name} WHERE n < 5 ORDER BY n", output=out, format="csv"
            )
            assert out.getvalue().decode().splitlines() == [f"{i},row {i}" for i in range(5)]
            total = 0
            count = 0
            async with conn.transaction():
                async for record in conn.cursor(f"SELECT n FROM {name}", prefetch=500):
                    total += record["n"]
                    count += 1
            assert (count, total) == (20_000, sum(range(20_000)))
            rows = await conn.fetch(f"SELECT * FROM {name}")
            assert len(rows) == 20_000
            await conn.execute(f"DROP TABLE {name}")
        finally:
            await conn.close()

    run_on(main)


def test_type_codecs(run_on, postgres) -> None:
    async def main() -> None:
        conn = await asyncpg.connect(postgres.dsn)
        try:
            await conn.set_type_codec(
                "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
            )
            ident = uuid.uuid4()
            when = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
            row = await conn.fetchrow(
                "SELECT $1::jsonb AS doc, $2::uuid AS id, $3::timestamptz AS at, "
                "$4::numeric AS amount, $5::int[] AS arr, $6::bytea AS raw",
                {"a": [1, None, "x"]},
                ident,
                when,
                decimal.Decimal("12345.6789"),
                [1, 2, 3],
                b"\x00\xff",
            )
            assert row["doc"] == {"a": [1, None, "x"]}
            assert row["id"] == ident
            assert row["at"] == when
            assert row["amount"] == decimal.Decimal("12345.6789")
            assert row["arr"] == [1, 2, 3]
            assert row["raw"] == b"\x00\xff"
            with pytest.raises(asyncpg.UndefinedTableError):
                await conn.fetch("SELECT * FROM no_such_table")
        finally:
            await conn.close()

    run_on(main)


def test_tls_connection(run_on, postgres) -> None:
    """``ssl=``: asyncpg negotiates SSL in-band and upgrades with ``loop.start_tls``."""
    if not postgres.ca_pem:
        pytest.skip("the server runs without TLS (trustme is not installed)")
    ctx = ssl.create_default_context(cadata=postgres.ca_pem)

    async def main() -> None:
        conn = await asyncpg.connect(postgres.dsn, ssl=ctx)
        try:
            assert await conn.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            rows = await conn.fetch("SELECT repeat('x', 1000) AS s FROM generate_series(1, 5000)")
            assert len(rows) == 5000 and rows[0]["s"] == "x" * 1000
            transport = conn._transport
            assert transport.get_extra_info("sslcontext") is ctx
        finally:
            await conn.close()
        async with asyncpg.create_pool(postgres.dsn, ssl=ctx, min_size=2, max_size=4) as pool:
            got = await asyncio.gather(*(pool.fetchval("SELECT $1::int", i) for i in range(200)))
            assert got == list(range(200))

    run_on(main)


def test_pool_survives_killed_backends(run_on, postgres) -> None:
    """The server terminates every pooled connection: the pool notices EOF and reconnects."""

    async def main() -> None:
        async with asyncpg.create_pool(postgres.dsn, min_size=3, max_size=3) as pool:
            rows = await asyncio.gather(
                *(pool.fetchrow("SELECT pg_backend_pid() AS pid, pg_sleep(0.05)") for _ in range(3))
            )
            pids = [row["pid"] for row in rows]
            admin = await asyncpg.connect(postgres.dsn)
            try:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE pid = ANY($1::int[])",
                    pids,
                )
            finally:
                await admin.close()
            await asyncio.sleep(0.1)
            assert [await pool.fetchval("SELECT 1") for _ in range(6)] == [1] * 6
            new_pid = await pool.fetchval("SELECT pg_backend_pid()")
            assert new_pid not in pids

    run_on(main)
