"""The one interface every output implements: what a stream does with a source session.

Who calls this: the stream's session (camstream_worker/session.py) hands each
source session to every output of its stream, from whichever thread reads the
source; the stream (camstream_worker/stream.py) closes them and removes their
files. An output never knows which kind of source feeds it.

    begin(templates) ── write(index, packet) ... ── end(keep_last)   one session, again and again
    close()                                                          the stream stops here
    remove_files()                                                   the stream leaves this worker
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import av

from camstream_worker.packets import Packet


class Output(Protocol):
    def begin(self, templates: Sequence[av.stream.Stream]) -> None:
        """A new session whose packets refer to `templates` by index."""
        ...

    def write(self, index: int, packet: Packet) -> None:
        """One packet of template `index` (timestamps in its time base).

        An `av.Packet` or a light `Frame` (packets.py); an output that needs
        an `av.Packet` converts it with `packets.to_av`."""
        ...

    def end(self, *, keep_last: bool = True) -> None:
        """The session is over; keep_last=False drops what is not written yet."""
        ...

    def close(self) -> None:
        """The stream stops: let go of threads and codecs (called off the event loop)."""
        ...

    def remove_files(self) -> None:
        """Delete what this output wrote (the stream was deleted or moved away)."""
        ...
