"""Recording: every finished live segment, grouped and kept in object storage.

- `recorder`: one per recorded stream, an Output of its Stream: appends each
  segment the HLS writer cut (its own bytes: passthrough, never re-encoded)
  to the open group in the worker's spool and closes the group once it holds
  `spec.recording.groupSeconds` of video;
- `spool`: the spool folder's files (open groups with their journal, closed
  groups ready to upload) and the recovery of groups a killed process left open;
- `uploader`: one per worker, puts closed groups into the object store in
  order, keeps the spool under its bound (what it must drop is counted and
  reported), and reports upload lag, spool bytes and failures as metrics.
"""
