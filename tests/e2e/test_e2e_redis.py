"""redis-py's asyncio client against a real Redis server (the ``redis_server`` fixture).

Commands over a connection pool, pipelines (transactional and not), WATCH/MULTI retries,
pub/sub (channels and patterns), blocking pops with timeouts -- on the loop under test.
"""

from __future__ import annotations

import asyncio

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

redis = pytest.importorskip("redis", reason=NEED.format("redis"))
aioredis = pytest.importorskip("redis.asyncio", reason="needs redis-py >= 4.2")


def client(service, **kwargs):
    return aioredis.Redis(host=service.host, port=service.port, decode_responses=True, **kwargs)


async def close(r) -> None:
    # redis-py 5.0.1 renamed close() to aclose().
    await (r.aclose() if hasattr(r, "aclose") else r.close())


def test_commands_and_pool(impl, run_on, redis_server) -> None:
    prefix = f"ferro:{impl.name}:cmd"

    async def main() -> None:
        pool = aioredis.BlockingConnectionPool(
            host=redis_server.host, port=redis_server.port, max_connections=20, timeout=10,
            decode_responses=True,
        )  # fmt: skip
        r = aioredis.Redis(connection_pool=pool)
        try:
            assert await r.ping() is True
            await r.set(f"{prefix}:k", "v", ex=60)
            assert await r.get(f"{prefix}:k") == "v"
            assert await r.incrby(f"{prefix}:n", 5) == 5
            await r.hset(f"{prefix}:h", mapping={"a": "1", "b": "2"})
            assert await r.hgetall(f"{prefix}:h") == {"a": "1", "b": "2"}

            # 1,000 concurrent commands wait their turn for the pool's 20 connections.
            async def bump(i: int) -> int:
                return await r.incr(f"{prefix}:counter")

            got = await asyncio.gather(*(bump(i) for i in range(1000)))
            assert sorted(got) == list(range(1, 1001))
            keys = [k async for k in r.scan_iter(match=f"{prefix}:*")]
            assert len(keys) == 4
            await r.delete(*keys)
        finally:
            await close(r)
            await pool.disconnect()

    run_on(main)


def test_pipelines(impl, run_on, redis_server) -> None:
    prefix = f"ferro:{impl.name}:pipe"

    async def main() -> None:
        r = client(redis_server)
        try:
            async with r.pipeline(transaction=True) as pipe:
                for i in range(1000):
                    pipe.set(f"{prefix}:{i}", i)
                for i in range(1000):
                    pipe.get(f"{prefix}:{i}")
                results = await pipe.execute()
            assert results[:1000] == [True] * 1000
            assert results[1000:] == [str(i) for i in range(1000)]

            async with r.pipeline(transaction=False) as pipe:
                pipe.incr(f"{prefix}:x").incr(f"{prefix}:x").get(f"{prefix}:x")
                assert await pipe.execute() == [1, 2, "2"]

            # Optimistic locking: a WATCHed key changed by another client fails the MULTI.
            other = client(redis_server)
            try:
                async with r.pipeline(transaction=True) as pipe:
                    await pipe.watch(f"{prefix}:x")
                    pipe.multi()
                    pipe.set(f"{prefix}:x", "mine")
                    await other.set(f"{prefix}:x", "theirs")
                    with pytest.raises(redis.WatchError):
                        await pipe.execute()
                assert await r.get(f"{prefix}:x") == "theirs"
            finally:
                await close(other)
            await r.delete(*[f"{prefix}:{i}" for i in range(1000)], f"{prefix}:x")
        finally:
            await close(r)

    run_on(main)


def test_pubsub(impl, run_on, redis_server) -> None:
    channel = f"ferro:{impl.name}:news"

    async def main() -> None:
        r = client(redis_server)
        pubsub = r.pubsub()
        try:
            await pubsub.subscribe(channel)
            await pubsub.psubscribe(f"ferro:{impl.name}:pat.*")
            got: list[tuple[str, str]] = []

            async def reader() -> None:
                while len(got) < 600:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
                    if msg is not None:
                        got.append((msg["channel"], msg["data"]))

            task = asyncio.create_task(reader())
            for i in range(500):
                receivers = await r.publish(channel, f"n{i}")
                assert receivers == 1
            for i in range(100):
                await r.publish(f"ferro:{impl.name}:pat.{i % 3}", f"p{i}")
            await asyncio.wait_for(task, 30)
            assert got[:500] == [(channel, f"n{i}") for i in range(500)]
            assert got[500:] == [(f"ferro:{impl.name}:pat.{i % 3}", f"p{i}") for i in range(100)]
            await pubsub.unsubscribe(channel)
            await pubsub.punsubscribe()
        finally:
            await (pubsub.aclose() if hasattr(pubsub, "aclose") else pubsub.close())
            await close(r)

    run_on(main)


def test_blocking_pop_and_timeouts(impl, run_on, redis_server) -> None:
    key = f"ferro:{impl.name}:queue"

    async def main() -> None:
        r = client(redis_server)
        producer = client(redis_server)
        try:
            await r.delete(key)
            # BLPOP times out server-side and returns None.
            assert await r.blpop([key], timeout=0.2) is None

            async def produce() -> None:
                for i in range(50):
                    await asyncio.sleep(0.002)
                    await producer.rpush(key, f"job {i}")

            task = asyncio.create_task(produce())
            jobs = [(await r.blpop([key], timeout=5))[1] for _ in range(50)]
            await task
            assert jobs == [f"job {i}" for i in range(50)]
            # A client-side timeout on a blocked command cancels cleanly.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(r.blpop([key], timeout=10), 0.2)
            assert await producer.ping() is True
        finally:
            await close(r)
            await close(producer)

    run_on(main)


def test_reconnect_after_server_kills_connection(impl, run_on, redis_server) -> None:
    async def main() -> None:
        r = client(redis_server)
        try:
            assert await r.ping() is True
            killed = await r.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")
            assert killed >= 1
            # The next command finds the connection closed and retries on a new one.
            assert [await r.ping() for _ in range(3)] == [True] * 3
        finally:
            await close(r)

    run_on(main)
