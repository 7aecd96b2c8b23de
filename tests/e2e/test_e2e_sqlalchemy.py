"""SQLAlchemy's asyncio extension (ORM and Core) over asyncpg and over aiosqlite.

The asyncpg engine talks to the suite's PostgreSQL server (the ``postgres`` fixture); the
aiosqlite engine to a database file in ``tmp_path`` (aiosqlite runs sqlite3 in a thread and
completes the loop's futures with ``call_soon_threadsafe``).  Both go through SQLAlchemy's
greenlet bridge.  Covered: ORM models with a relationship, inserts and queries through an
``AsyncSession`` (eager loading, streaming results, updates, deletes), a transaction rolled
back by an exception (and a savepoint), and 50 concurrent sessions sharing the engine's
pool -- on the loop under test.  Every engine is disposed of at the end.
"""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

sqlalchemy = pytest.importorskip("sqlalchemy", reason=NEED.format("sqlalchemy"))
pytest.importorskip("greenlet", reason=NEED.format("greenlet"))
sa_asyncio = pytest.importorskip("sqlalchemy.ext.asyncio", reason="needs SQLAlchemy >= 2.0")

from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

BACKENDS = ["asyncpg", "aiosqlite"]


def make_models(suffix: str) -> tuple[Any, Any, Any]:
    """ORM models with table names of this test and loop (the PostgreSQL database is shared)."""

    class Base(DeclarativeBase):
        pass

    class User(Base):
        __tablename__ = f"users_{suffix}"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50), unique=True)
        balance: Mapped[int] = mapped_column(default=0)
        addresses: Mapped[list[Address]] = relationship(
            back_populates="user", cascade="all, delete-orphan", order_by="Address.id"
        )

    class Address(Base):
        __tablename__ = f"addresses_{suffix}"
        id: Mapped[int] = mapped_column(primary_key=True)
        email: Mapped[str] = mapped_column(String(100))
        user_id: Mapped[int] = mapped_column(ForeignKey(f"users_{suffix}.id"))
        user: Mapped[User] = relationship(back_populates="addresses")

    return Base, User, Address


def engine_url(backend: str, request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    if backend == "asyncpg":
        pytest.importorskip("asyncpg", reason=NEED.format("asyncpg"))
        pg = request.getfixturevalue("postgres")
        return f"postgresql+asyncpg://{pg.user}@{pg.host}:{pg.port}/{pg.database}"
    pytest.importorskip("aiosqlite", reason=NEED.format("aiosqlite"))
    return f"sqlite+aiosqlite:///{tmp_path / 'e2e.sqlite'}"


def make_engine(url: str, **kwargs: Any) -> Any:
    if url.startswith("sqlite"):
        # Writers wait for each other (sqlite3's busy timeout) instead of failing at once.
        kwargs.setdefault("connect_args", {"timeout": 30})
    return sa_asyncio.create_async_engine(url, **kwargs)


async def recreate(engine: Any, base: Any) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(base.metadata.drop_all)
        await conn.run_sync(base.metadata.create_all)


async def drop(engine: Any, base: Any) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(base.metadata.drop_all)


@pytest.mark.parametrize("backend", BACKENDS)
def test_orm_session(impl, run_on, request, tmp_path, backend) -> None:
    url = engine_url(backend, request, tmp_path)
    base, User, Address = make_models(f"orm_{impl.name}")

    async def main() -> None:
        engine = make_engine(url)
        try:
            await recreate(engine, base)
            session_factory = sa_asyncio.async_sessionmaker(engine, expire_on_commit=False)
            async with session_factory() as session, session.begin():
                for i in range(100):
                    user = User(name=f"user{i:03}", balance=i)
                    user.addresses = [Address(email=f"u{i}.{k}@ferro.test") for k in range(i % 3)]
                    session.add(user)
            assert all(u.id is not None for u in session.identity_map.values())

            async with session_factory() as session:
                count = await session.scalar(select(func.count()).select_from(User))
                assert count == 100
                rows = await session.scalars(
                    select(User)
                    .where(User.balance >= 95)
                    .options(selectinload(User.addresses))
                    .order_by(User.name)
                )
                users = rows.all()
                assert [u.name for u in users] == [f"user{i:03}" for i in range(95, 100)]
                assert [[a.email for a in u.addresses] for u in users] == [
                    [f"u{i}.{k}@ferro.test" for k in range(i % 3)] for i in range(95, 100)
                ]
                # A join with an aggregate, and a streamed result (a server-side cursor on
                # PostgreSQL).
                per_user = await session.execute(
                    select(User.name, func.count(Address.id))
                    .join(Address, isouter=True)
                    .group_by(User.name)
                    .order_by(User.name)
                )
                assert [n for _name, n in per_user] == [i % 3 for i in range(100)]
                stream = await session.stream_scalars(select(User.name).order_by(User.id))
                names = [name async for name in stream]
                assert names == [f"user{i:03}" for i in range(100)]

                # Lazy loading is I/O: in asyncio it goes through AsyncAttrs/awaitable_attrs
                # or run_sync; here run_sync, running the sync ORM in the greenlet bridge.
                def total_addresses(sync_session: Any) -> int:
                    return sum(len(u.addresses) for u in sync_session.scalars(select(User)))

                assert await session.run_sync(total_addresses) == sum(i % 3 for i in range(100))

                # Update and delete, committed.
                user = await session.scalar(select(User).where(User.name == "user010"))
                user.balance = 1000
                await session.delete(await session.get(User, users[0].id))
                await session.commit()
            async with session_factory() as session:
                assert (
                    await session.scalar(select(User.balance).where(User.name == "user010")) == 1000
                )
                assert await session.scalar(select(func.count()).select_from(User)) == 99
                assert await session.scalar(select(func.count()).select_from(Address)) == sum(
                    i % 3 for i in range(100) if i != 95
                )
            await drop(engine, base)
        finally:
            await engine.dispose()

    run_on(main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rollback(impl, run_on, request, tmp_path, backend) -> None:
    url = engine_url(backend, request, tmp_path)
    base, User, Address = make_models(f"rb_{impl.name}")

    class Boom(Exception):
        pass

    async def main() -> None:
        engine = make_engine(url)
        try:
            await recreate(engine, base)
            session_factory = sa_asyncio.async_sessionmaker(engine, expire_on_commit=False)
            async with session_factory() as session, session.begin():
                session.add(User(name="kept", balance=10))

            # An exception inside the transaction rolls everything back.
            with pytest.raises(Boom):
                async with session_factory() as session, session.begin():
                    session.add(User(name="lost", addresses=[Address(email="lost@ferro.test")]))
                    await session.flush()  # the rows reached the database...
                    kept = await session.scalar(select(User).where(User.name == "kept"))
                    kept.balance = 0
                    await session.flush()
                    raise Boom  # ...and are rolled back
            # A constraint violation, in a savepoint that is rolled back alone.
            async with session_factory() as session, session.begin():
                session.add(User(name="second", balance=20))
                with pytest.raises(sqlalchemy.exc.IntegrityError):
                    async with session.begin_nested():
                        session.add(User(name="kept"))  # unique name
                        await session.flush()
            # An explicit rollback().
            async with session_factory() as session:
                session.add(User(name="rolled back"))
                await session.flush()
                await session.rollback()

            async with session_factory() as session:
                rows = await session.execute(select(User.name, User.balance).order_by(User.name))
                assert rows.all() == [("kept", 10), ("second", 20)]
                assert await session.scalar(select(func.count()).select_from(Address)) == 0
            await drop(engine, base)
        finally:
            await engine.dispose()

    run_on(main)


@pytest.mark.parametrize("backend", BACKENDS)
def test_50_concurrent_sessions(impl, run_on, request, tmp_path, backend) -> None:
    url = engine_url(backend, request, tmp_path)
    base, User, Address = make_models(f"conc_{impl.name}")
    n = 50

    async def main() -> None:
        # Fewer connections than sessions: sessions wait for the pool.
        engine = make_engine(url, pool_size=8, max_overflow=0, pool_timeout=60)
        try:
            await recreate(engine, base)
            session_factory = sa_asyncio.async_sessionmaker(engine, expire_on_commit=False)

            async def worker(i: int) -> tuple[int, int, list[str]]:
                async with session_factory() as session:
                    async with session.begin():  # write first: sqlite takes its lock here
                        user = User(name=f"w{i}", balance=i)
                        user.addresses = [Address(email=f"w{i}.{k}@ferro.test") for k in range(3)]
                        session.add(user)
                    async with session.begin():
                        user.balance += 1000
                    await asyncio.sleep(0)
                    fetched = await session.scalar(
                        select(User).where(User.id == user.id).options(selectinload(User.addresses))
                    )
                    return fetched.id, fetched.balance, [a.email for a in fetched.addresses]

            results = await asyncio.gather(*(worker(i) for i in range(n)))
            assert len({r[0] for r in results}) == n
            assert [r[1] for r in results] == [1000 + i for i in range(n)]
            assert [r[2] for r in results] == [
                [f"w{i}.{k}@ferro.test" for k in range(3)] for i in range(n)
            ]
            assert engine.pool.checkedout() == 0
            async with session_factory() as session:
                total = await session.scalar(select(func.sum(User.balance)))
                assert total == sum(1000 + i for i in range(n))
                assert await session.scalar(select(func.count()).select_from(Address)) == 3 * n
            await drop(engine, base)
        finally:
            await engine.dispose()

    run_on(main)
