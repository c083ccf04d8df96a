"""Which passphrases the SRT service reads, and when (servers/srt/hosting.py).

At 500 SRT streams a worker must not read 500 Secrets a second: only new or
changed streams, a stream whose publisher was just refused, and all of them
every RESOLVE seconds. The listener is stood in for by its one method the
service calls; the time is passed in.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping

from camstream.spec import SecretRef, StreamKey, StreamSpec, parse_stream
from camstream_worker.errors import SecretError
from camstream_worker.servers.srt import hosting
from camstream_worker.servers.srt.listener import Publication


def spec(name: str, latency: int = 120, url: str | None = None) -> StreamSpec:
    source: dict[str, object] = {
        "protocol": "srt",
        "srt": {"passphraseSecretRef": {"name": f"{name}-srt"}, "latencyMs": latency},
    }
    if url:
        source["url"] = url
    return parse_stream(
        {"metadata": {"name": name, "namespace": "site"}, "spec": {"source": source}}
    )


class Engines:
    def __init__(self, specs: dict[StreamKey, StreamSpec]) -> None:
        self.current = specs

    def specs(self) -> Mapping[StreamKey, StreamSpec]:
        return self.current

    def adopt_publisher(self, key: StreamKey, peer: str, sock: socket.socket) -> None:
        raise AssertionError("not in these tests")

    def note(self, key: StreamKey, reason: str, message: str) -> None:
        pass


class Secrets:
    def __init__(self) -> None:
        self.values = {"door-srt": "door-passphrase", "gate-srt": "short"}
        self.reads: list[str] = []

    async def get(self, namespace: str, ref: SecretRef) -> str:
        self.reads.append(ref.name)
        if ref.name not in self.values:
            raise SecretError(f"secret {ref.name!r} not found")
        return self.values[ref.name]


class Listener:
    def __init__(self) -> None:
        self.table: dict[StreamKey, Publication] = {}

    def publish(self, table: dict[StreamKey, Publication]) -> None:
        self.table = table


def test_reads_only_what_changed_and_all_every_resolve_interval() -> None:
    door, gate, pull = spec("door"), spec("gate"), spec("pull", url="srt://127.0.0.1:9")
    engines = Engines({s.key: s for s in (door, gate, pull)})
    secrets, listener, now = Secrets(), Listener(), [1000.0]
    service = hosting.SrtService(listener, engines, secrets, clock=lambda: now[0])  # type: ignore[arg-type]

    asyncio.run(service.refresh())
    # The pull stream calls out and takes no publishers; gate's passphrase is too short.
    assert sorted(secrets.reads) == ["door-srt", "gate-srt"]
    assert list(listener.table) == [door.key]
    assert listener.table[door.key].latency_ms == 120

    secrets.reads.clear()
    now[0] += 10
    asyncio.run(service.refresh())
    assert secrets.reads == []  # nothing changed

    engines.current = {door.key: spec("door", latency=400), gate.key: gate}
    asyncio.run(service.refresh())
    assert secrets.reads == ["door-srt"]  # only the changed one
    assert listener.table[door.key].latency_ms == 400

    secrets.reads.clear()
    secrets.values["gate-srt"] = "a-rotated-passphrase"
    service.stale(gate.key)  # its publisher was refused: it may know the new one
    asyncio.run(service.refresh())
    assert secrets.reads == ["gate-srt"] and set(listener.table) == {door.key, gate.key}

    secrets.reads.clear()
    now[0] += hosting.RESOLVE
    asyncio.run(service.refresh())
    assert sorted(secrets.reads) == ["door-srt", "gate-srt"]

    engines.current = {gate.key: gate}
    asyncio.run(service.refresh())
    assert set(listener.table) == {gate.key}  # a removed stream takes no publisher
