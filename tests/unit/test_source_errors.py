"""Opening a pulled source fails with one uniform answer, whatever the cause (errors.py).

The stream's author reads its status: if "refused" read differently from
"404" or "not media", the status would map the worker's network for them.
"""

from __future__ import annotations

import errno
import pickle

import av
import pytest

from camstream_worker import errors
from camstream_worker.errors import UNREACHABLE, SourceUnreachable, from_ffmpeg


def _ffmpeg_errors() -> list[BaseException]:
    return [
        av.error.HTTPNotFoundError(-1, "Server returned 404 Not Found", "http://x/"),
        av.error.HTTPForbiddenError(-1, "403", "http://user:hunter2@x/"),
        av.error.HTTPUnauthorizedError(-1, "401", "http://x/"),
        av.error.HTTPServerError(-1, "502", "http://x/"),
        av.error.InvalidDataError(-1, "Invalid data", "http://x/"),
        av.error.EOFError(-1, "End of file", "rtsp://x/"),
        av.error.ExitError(-1, "Immediate exit", "rtsp://x/"),
        av.error.ArgumentError(errno.EINVAL, "Protocol not on whitelist", "subfile,,:/etc/passwd"),
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        OSError(errno.EHOSTUNREACH, "no route"),
        OSError(errno.EIO, "io"),
        TimeoutError("timed out"),
    ]


@pytest.mark.parametrize("exc", _ffmpeg_errors(), ids=lambda e: type(e).__name__)
def test_every_failure_to_open_a_camera_reads_the_same(exc: BaseException) -> None:
    mapped = from_ffmpeg(exc, opening=True, remote=True)
    assert isinstance(mapped, SourceUnreachable)
    assert (mapped.reason, str(mapped)) == ("SourceUnreachable", UNREACHABLE)
    assert "hunter2" not in mapped.detail and "http" not in mapped.detail


def test_a_camera_refusing_the_streams_own_credentials_says_so() -> None:
    refused = av.error.HTTPUnauthorizedError(-1, "401", "rtsp://x/")
    mapped = from_ffmpeg(refused, opening=True, remote=True, credentials=True)
    assert isinstance(mapped, errors.AuthenticationFailed)


def test_local_files_keep_their_detailed_reasons() -> None:
    missing = from_ffmpeg(FileNotFoundError(errno.ENOENT, "x"), opening=True, remote=False)
    assert str(missing) == "no such file"
    garbage = from_ffmpeg(av.error.InvalidDataError(-1, "x", "/x"), opening=True, remote=False)
    assert isinstance(garbage, errors.UnsupportedMedia)


def test_errors_cross_the_engine_process_pipe_with_their_class_and_detail() -> None:
    for error in (SourceUnreachable("ECONNREFUSED"), errors.SecretNotAllowed("Secret a/b: no")):
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error)
    assert pickle.loads(pickle.dumps(SourceUnreachable("x"))).detail == "x"
