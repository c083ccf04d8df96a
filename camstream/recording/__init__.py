"""Recordings: how a stream's past is laid out in object storage, pure and shared.

Who calls this: the worker's recorder (outputs/recording/) writes groups in
this format, its uploader puts them under these keys, its HTTP recordings
routes read them back from any worker; the operator's retention janitor
deletes them. Pure (no I/O) except `janitor`, which drives an ObjectStore.

- `layout`: object keys, `<ns>/<name>/<YYYYMMDDHH>/<start ms>-<duration ms>-<writer>.ts`,
  so a listing alone gives the recorded ranges and the hours to look in;
- `groupfile`: one object = the live segments' own bytes, back to back,
  then an index of them and a fixed footer (the index travels in the same PUT);
- `timeline`: the segments of several objects (two owners during a handoff)
  merged by program date-time into one timeline with no gap and no duplicate;
- `retention`: which objects a stream's retention deletes;
- `janitor`: one retention pass over a store (run by the operator's leader).
"""

from __future__ import annotations


class RecordingFormatError(ValueError):
    """Bytes or a key that are not a camstream recording (named, never echoed whole)."""
