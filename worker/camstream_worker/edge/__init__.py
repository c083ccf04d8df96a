"""The ingest edge: holds pushed cameras' connections while workers come and go (#15).

Who runs this: the `camstream-edge` console script (`camstream edge`), one
process per edge pod of the chart's edge Deployment, behind the RTMP
LoadBalancer Service. Standalone mode does not use it.

    camera ──RTMP──▶ edge ──RTMP (one chunk per message)──▶ owning worker
                         └─ during a handoff, also ──────▶ the handoff's target
    camera ──SRT───▶ edge ──SRT (MPEG-TS bytes unchanged)──▶ owning worker
                         └─ during a handoff, also ──────▶ the handoff's target

Modules, top down:

- `cli`: the command line, the ring ConfigMap watch, /readyz and /metrics,
  SIGTERM → drain.
- `srt_relay`: the SRT port (`SrtRelay`, one of the `Edge`'s listeners): the
  worker's own SrtListener, each publisher's MPEG-TS relayed over a TCP leg
  to the owners (a challenge answered under the edge token and the stream's
  passphrase), make-before-break, from a PAT.
- `server`: the `Edge`: its listener set (RTMP, and SRT with --srt-port), the
  shared caps, key gate and refusals of the worker's RTMP ingest
  (servers/rtmp), and the drain.
- `passphrases`: the SRT passphrase cache libsrt's callback asks without
  waiting, filled from the API in the event loop.
- `session`: one camera: answers its connect/createStream/publish, asks the
  owner about its key, then dechunks its media and feeds every owner the ring
  names for the stream, reconnecting to a new owner without the camera
  noticing.
- `upstream`: one RTMP publishing session from the edge to a worker.
- `owners`: pure: which workers a stream is fed to, from the ring document.
- `tspackets`: pure: whole MPEG-TS packets and where a PAT starts.
- `metrics`: the edge's Prometheus figures.

The edge keeps no per-stream state beyond its connections: restarting an
edge costs each of its cameras one reconnect, nothing else.
"""
