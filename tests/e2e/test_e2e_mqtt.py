"""aiomqtt (paho-mqtt 2) against a real MQTT broker: Mosquitto on 127.0.0.1.

aiomqtt drives paho's socket with the loop's ``add_reader``/``add_writer`` (connecting in an
executor thread, which registers them through ``call_soon_threadsafe``).  Covered: 10,000
QoS 0 messages over two topics and 1,000 QoS 1 messages, each checked payload by payload
and in order per topic; wildcards, retained messages, unsubscribe; and a broker restart in
the middle of a stream (the client sees ``MqttError``, the broker comes back on the same
port, the client reconnects with the same ``Client`` and carries on) -- on the loop under
test.
"""

from __future__ import annotations

import asyncio
import pathlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

NEED = "{} is not installed: pip install -r tests/e2e/requirements.txt (make e2e)"

aiomqtt = pytest.importorskip("aiomqtt", reason=NEED.format("aiomqtt"))

from e2e_util import HOST, free_port, log_tail, stop_process, unavailable, wait_for_port


class Mosquitto:
    """A Mosquitto broker on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="ferroloop-e2e-mqtt-"))
        self.tmp.chmod(0o755)  # started as root, mosquitto drops to its own user
        self.log = self.tmp / "mosquitto.log"
        self.port = free_port()
        self.conf = self.tmp / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} {HOST}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            "log_dest stderr\n"
            "log_type error\n"
            "log_type warning\n"
            # no limit on the messages queued for a slow subscriber (QoS 0 ones included)
            "max_queued_messages 0\n"
            "max_queued_bytes 0\n"
        )
        self.conf.chmod(0o644)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log_fh:
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT, cwd=self.tmp,
            )  # fmt: skip
        try:
            wait_for_port(self.port, 30, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            unavailable(f"mosquitto did not start: {exc}: {log_tail(self.log)}")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def mosquitto_exe() -> str:
    exe = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if exe is None:
        unavailable(
            "mosquitto not found: run tests/e2e/setup_services.sh (apt-get install mosquitto)"
        )
    return exe


@pytest.fixture(scope="module")
def broker() -> Iterator[Mosquitto]:
    server = Mosquitto(mosquitto_exe())
    try:
        server.start()
        yield server
    finally:
        server.close()


def client(server: Mosquitto, name: str, **kwargs) -> aiomqtt.Client:
    return aiomqtt.Client(HOST, server.port, identifier=name, timeout=10, **kwargs)


async def collect(sub: aiomqtt.Client, count: int) -> list[tuple[str, bytes, int]]:
    got: list[tuple[str, bytes, int]] = []
    async for message in sub.messages:
        got.append((message.topic.value, bytes(message.payload), message.qos))
        if len(got) == count:
            break
    return got


def per_topic(messages: list[tuple[str, bytes, int]]) -> dict[str, list[bytes]]:
    out: dict[str, list[bytes]] = {}
    for topic, payload, _qos in messages:
        out.setdefault(topic, []).append(payload)
    return out


def test_qos0_10000_messages(impl, run_on, broker) -> None:
    base = f"ferro/{impl.name}/q0"
    topics = [f"{base}/a", f"{base}/b"]
    n = 10_000

    async def main() -> None:
        async with (
            client(broker, f"{impl.name}-q0-sub") as sub,
            client(broker, f"{impl.name}-q0-pub") as pub,
        ):
            await sub.subscribe(f"{base}/#", qos=0)
            reader = asyncio.create_task(collect(sub, n))
            expected: dict[str, list[bytes]] = {t: [] for t in topics}
            for i in range(n):
                topic = topics[i % 2]
                payload = f"{i}:".encode() + bytes([i % 251]) * (i % 200)
                expected[topic].append(payload)
                await pub.publish(topic, payload, qos=0)
            got = await asyncio.wait_for(reader, 30)
            assert len(got) == n
            assert {qos for _t, _p, qos in got} == {0}
            assert per_topic(got) == expected  # every payload, byte for byte, in order

    run_on(main)


def test_qos1_messages(impl, run_on, broker) -> None:
    base = f"ferro/{impl.name}/q1"
    n = 1000

    async def main() -> None:
        async with (
            client(broker, f"{impl.name}-q1-sub") as sub,
            client(broker, f"{impl.name}-q1-pub", max_inflight_messages=50) as pub,
        ):
            codes = await sub.subscribe([(f"{base}/+", 1)])
            assert [int(getattr(c, "value", c)) for c in codes] == [1]  # granted QoS 1
            reader = asyncio.create_task(collect(sub, n))
            # Publishes are confirmed (PUBACK) one by one, but many are in flight at once.
            sem = asyncio.Semaphore(40)

            async def send(i: int) -> None:
                async with sem:
                    await pub.publish(f"{base}/{i % 3}", f"m{i}".encode(), qos=1)

            await asyncio.gather(*(send(i) for i in range(n)))
            got = await asyncio.wait_for(reader, 30)
            assert {qos for _t, _p, qos in got} == {1}
            topics = per_topic(got)
            assert sorted(topics) == [f"{base}/{k}" for k in range(3)]
            for k in range(3):
                # QoS 1 may deliver duplicates only after a reconnect: none here.
                assert topics[f"{base}/{k}"] == [f"m{i}".encode() for i in range(k, n, 3)]

            # Retained messages, wildcard filters and unsubscribe.
            await pub.publish(f"{base}/retained", b"kept", qos=1, retain=True)
            async with client(broker, f"{impl.name}-q1-late") as late:
                await late.subscribe(f"{base}/retained", qos=1)
                message = await asyncio.wait_for(anext(aiter(late.messages)), 10)
                assert (message.topic.value, message.payload, message.retain) == (
                    f"{base}/retained",
                    b"kept",
                    True,
                )
                assert message.topic.matches(f"{base}/+")
                await late.unsubscribe(f"{base}/retained")
                await pub.publish(f"{base}/retained", b"", qos=1, retain=True)  # clear it
                await pub.publish(f"{base}/retained", b"gone", qos=1)
                await asyncio.sleep(0.2)
                assert len(late.messages) == 0

    run_on(main)


def test_broker_restart(impl, run_on) -> None:
    server = Mosquitto(mosquitto_exe())
    server.start()
    topic = f"ferro/{impl.name}/restart"

    async def main() -> None:
        sub = client(server, f"{impl.name}-restart-sub")
        pub = client(server, f"{impl.name}-restart-pub")
        got: list[bytes] = []
        async with sub, pub:
            await sub.subscribe(topic, qos=1)
            for i in range(500):
                await pub.publish(topic, f"before {i}".encode(), qos=1)
            while len(got) < 500:
                message = await asyncio.wait_for(anext(aiter(sub.messages)), 10)
                got.append(message.payload)
            assert got == [f"before {i}".encode() for i in range(500)]

            # The broker goes away under both clients.
            await asyncio.to_thread(server.stop)
            with pytest.raises(aiomqtt.MqttError):
                await asyncio.wait_for(anext(aiter(sub.messages)), 10)
            # The publisher notices too (not by publishing: aiomqtt registers a writer with
            # call_soon_threadsafe, which can run after paho closed the broken socket).
            with pytest.raises(aiomqtt.MqttError):
                await asyncio.wait_for(anext(aiter(pub.messages)), 10)
        # Nobody listens now: a connection is refused, with MqttError.
        with pytest.raises(aiomqtt.MqttError):
            async with pub:
                pass

        # The broker comes back on the same port; the same clients reconnect and go on.
        await asyncio.to_thread(server.start)
        async with sub, pub:
            await sub.subscribe(topic, qos=1)  # a clean session: subscribe again
            for i in range(500):
                await pub.publish(topic, f"after {i}".encode(), qos=1)
            after: list[bytes] = []
            while len(after) < 500:
                message = await asyncio.wait_for(anext(aiter(sub.messages)), 10)
                after.append(message.payload)
            assert after == [f"after {i}".encode() for i in range(500)]

    try:
        run_on(main)
    finally:
        server.close()
