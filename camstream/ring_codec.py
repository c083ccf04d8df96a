"""Compact text form of a RingTable, for one value of the ring ConfigMap.

Who calls it: the operator writes ``encode(table)`` into its ring ConfigMap on
every change; workers and a restarted operator read it back with ``decode``.
Pure: str in, str out.

Format (version 1), one line of compact JSON::

    {"format":"camstream-ring/1","partitions":P,"version":V,
     "members":["camstream-worker-0", ...],"owners":"<base64>"}

- ``members``: the distinct owners, sorted by name (a decoder accepts any
  order, but no duplicates and at most 65,536 of them).
- ``owners``: standard base64 of ``2 * P`` bytes: for each partition 0..P-1
  the index of its owner in ``members``, as an unsigned 16-bit big-endian
  integer.

Size: about ``8P/3`` bytes for the owners plus the names, so 16,384
partitions and 1,000 workers take about 64 KiB, far from the 1 MiB limit of a
ConfigMap (and random-looking indexes would not compress much anyway).

``decode`` checks everything and raises ValueError naming what is wrong; it
never returns a table with a hole or an out-of-range owner.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct

from camstream.ring_table import RingTable, is_power_of_two

FORMAT = "camstream-ring/1"
MAX_MEMBERS = 1 << 16
_INDEX_BYTES = 2


def encode(table: RingTable) -> str:
    """The ConfigMap value for ``table`` (see the module docstring for the format)."""
    members = table.members()
    if len(members) > MAX_MEMBERS:
        raise ValueError(f"ring has {len(members)} members; the format holds {MAX_MEMBERS}")
    index = {member: i for i, member in enumerate(members)}
    packed = struct.pack(f">{table.partitions}H", *(index[owner] for owner in table.owners))
    document = {
        "format": FORMAT,
        "partitions": table.partitions,
        "version": table.version,
        "members": list(members),
        "owners": base64.b64encode(packed).decode("ascii"),
    }
    return json.dumps(document, separators=(",", ":"))


def _field(document: dict[str, object], name: str, kind: type) -> object:
    value = document.get(name)
    # bool is an int subclass; a "partitions": true is not a number of partitions.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"ring table: field {name!r} must be {kind.__name__}, got {value!r:.60}")
    return value


def decode(text: str) -> RingTable:
    """The RingTable stored as ``text``; ValueError if it is not a valid version-1 table."""
    try:
        document = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise ValueError(f"ring table: not JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise ValueError("ring table: expected a JSON object")
    if document.get("format") != FORMAT:
        raise ValueError(f"ring table: unknown format {document.get('format')!r:.60}")
    partitions = _field(document, "partitions", int)
    version = _field(document, "version", int)
    members = _field(document, "members", list)
    owners_text = _field(document, "owners", str)
    assert isinstance(partitions, int) and isinstance(version, int)
    assert isinstance(members, list) and isinstance(owners_text, str)

    if not is_power_of_two(partitions):
        raise ValueError(f"ring table: partitions must be a power of two, got {partitions}")
    if version < 0:
        raise ValueError(f"ring table: version must be >= 0, got {version}")
    if not members or len(members) > MAX_MEMBERS:
        raise ValueError(f"ring table: needs 1..{MAX_MEMBERS} members, got {len(members)}")
    if not all(isinstance(member, str) and member for member in members):
        raise ValueError("ring table: members must be non-empty strings")
    if len(set(members)) != len(members):
        raise ValueError("ring table: duplicate member names")
    try:
        packed = base64.b64decode(owners_text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"ring table: owners is not valid base64 ({exc})") from exc
    if len(packed) != _INDEX_BYTES * partitions:
        raise ValueError(
            f"ring table: owners holds {len(packed)} bytes, "
            f"expected {_INDEX_BYTES * partitions} for {partitions} partitions"
        )
    indexes = struct.unpack(f">{partitions}H", packed)
    bad = next((p for p, i in enumerate(indexes) if i >= len(members)), None)
    if bad is not None:
        raise ValueError(
            f"ring table: partition {bad} names member #{indexes[bad]}, "
            f"but there are only {len(members)}"
        )
    owners = tuple(members[i] for i in indexes)
    # RingTable re-checks the member names (printable) and raises ValueError.
    return RingTable(partitions=partitions, version=version, owners=owners)
