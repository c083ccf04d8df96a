"""The ring ConfigMap's data, encoded and decoded: pure, no I/O.

Who calls this: the operator's ring store (operator/camstream_operator/ringstore.py)
writes it; every worker's cluster agent reads it on each change. Both sides must
agree byte for byte, so the format lives here in the shared package.

Format (ConfigMap `data`, all strings; compact because the map is rewritten on
each change and must stay far below 1 MiB even at P = 16384):

    partitions  "256"
    version     "12"             bumped on every write
    ring        the planned (home) table, camstream.ring.encode; absent before any join
    names       '["w-0","w-1"]'  the workers the serving table refers to
    serving     "W:" + base64(zlib(W bytes per partition: index into names + 1, 0 = none)),
                or "=" when equal to the home table (the steady state)
    handoffs    '[[p,"src","dst",id,started,attempt,"state",retry_at],...]'
    addresses   '{"w-0":"127.0.10.1"}'   pod IPs of the workers that are up
    nextId      next handoff id
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping, Sequence

from camstream import ring
from camstream.handoff import Handoff, HandoffState, RingDoc


class CodecError(ValueError):
    """The ConfigMap holds something this version cannot read."""


def encode_doc(doc: RingDoc) -> dict[str, str]:
    names = sorted({n for n in doc.serving if n})
    home = doc.table.owners if doc.table is not None else None
    serving = "=" if doc.serving == home else _encode_table(doc.serving, names)
    handoffs = [
        [
            *(h.partition, h.source, h.target, h.id, round(h.started, 3)),
            *(h.attempt, h.state.value, round(h.retry_at, 3)),
        ]
        for h in doc.handoffs
    ]
    data = {
        "partitions": str(doc.partitions),
        "version": str(doc.version),
        "names": json.dumps(names if serving != "=" else [], separators=(",", ":")),
        "serving": serving,
        "handoffs": json.dumps(handoffs, separators=(",", ":")),
        "addresses": json.dumps(dict(sorted(doc.addresses.items())), separators=(",", ":")),
        "nextId": str(doc.next_id),
    }
    if doc.table is not None:
        data["ring"] = ring.encode(doc.table)
    return data


def decode_doc(data: Mapping[str, str]) -> RingDoc:
    try:
        partitions = int(data["partitions"])
        table = ring.decode(data["ring"]) if "ring" in data else None
        if table is not None and table.partitions != partitions:
            raise ValueError("home table and serving table differ in size")
        raw_serving = data["serving"]
        if raw_serving == "=":
            if table is None:
                raise ValueError("serving refers to a missing home table")
            serving = table.owners
        else:
            serving = _decode_table(raw_serving, json.loads(data["names"]), partitions)
        handoffs = tuple(
            Handoff(
                partition=int(p),
                source=str(src),
                target=str(dst),
                id=int(hid),
                started=float(started),
                attempt=int(attempt),
                state=HandoffState(state),
                retry_at=float(retry_at),
            )
            for p, src, dst, hid, started, attempt, state, retry_at in json.loads(
                data.get("handoffs", "[]")
            )
        )
        addresses = {str(k): str(v) for k, v in json.loads(data.get("addresses", "{}")).items()}
        return RingDoc(
            partitions=partitions,
            version=int(data.get("version", "0")),
            table=table,
            serving=serving,
            handoffs=handoffs,
            addresses=addresses,
            next_id=int(data.get("nextId", "1")),
        )
    except (KeyError, ValueError, TypeError, zlib.error) as exc:
        raise CodecError(f"unreadable ring ConfigMap ({type(exc).__name__})") from exc


def _encode_table(owners: Sequence[str], names: Sequence[str]) -> str:
    index = {name: i + 1 for i, name in enumerate(names)}
    width = 1 if len(names) < 255 else 2
    raw = b"".join((index[o] if o else 0).to_bytes(width, "big") for o in owners)
    return f"{width}:" + base64.b64encode(zlib.compress(raw, 9)).decode("ascii")


def _decode_table(text: str, names: Sequence[str], partitions: int) -> tuple[str, ...]:
    width_text, _, payload = text.partition(":")
    width = int(width_text)
    raw = zlib.decompress(base64.b64decode(payload))
    if len(raw) != partitions * width:
        raise ValueError("table size does not match partitions")
    owners: list[str] = []
    for p in range(partitions):
        i = int.from_bytes(raw[p * width : (p + 1) * width], "big")
        owners.append(names[i - 1] if i else "")
    return tuple(owners)
