"""The worker's media exception tree, and the one place FFmpeg errors map into it.

Who calls this: every source raises these; the supervisor decides from the
class alone whether to reconnect or to mark the stream Failed.

    MediaError
     ├── SourceError              transient: reconnect with backoff
     │    ├── SourceUnreachable   refused, no route, DNS, timeout while opening
     │    ├── SourceEnded         the camera closed the stream
     │    └── SourceStalled       no packet for stallTimeoutSeconds
     └── PermanentSourceError     needs a fix by a person: stream Failed
          ├── AuthenticationFailed  wrong password or stream key
          ├── UnsupportedMedia      a codec or container we cannot remux
          └── SecretError           a referenced Secret or key is missing

Messages are written here, from the error class and errno, never from the
FFmpeg message: FFmpeg quotes the URL it opened, and a camera URL may carry
credentials.
"""

from __future__ import annotations

import errno

import av


class MediaError(Exception):
    """Base of the tree; `reason` is a CamelCase word for status and metrics."""

    reason = "MediaError"


class SourceError(MediaError):
    reason = "SourceError"


class SourceUnreachable(SourceError):
    reason = "SourceUnreachable"


class SourceEnded(SourceError):
    reason = "SourceEnded"


class SourceStalled(SourceError):
    reason = "Stalled"


class PermanentSourceError(MediaError):
    reason = "Failed"


class AuthenticationFailed(PermanentSourceError):
    reason = "AuthenticationFailed"


class UnsupportedMedia(PermanentSourceError):
    reason = "UnsupportedMedia"


class SecretError(PermanentSourceError):
    reason = "SecretMissing"


_UNREACHABLE_ERRNOS = {
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.EADDRNOTAVAIL,
}


def from_ffmpeg(exc: BaseException, *, opening: bool, remote: bool = True) -> MediaError:
    """Map an exception raised by PyAV to our tree, with a URL-free message.

    `remote`: the source is a camera on the network. Unreadable data from a
    camera is transient (booting, hung, or timed out in FFmpeg's probe, which
    FFmpeg reports as invalid data); from a file it will not change.
    """
    if isinstance(exc, MediaError):
        return exc
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return AuthenticationFailed("the camera refused the credentials (401/403)")
    if isinstance(exc, av.error.HTTPNotFoundError):
        return SourceUnreachable("the camera has no such stream (404)")
    if isinstance(exc, av.error.HTTPError | av.error.HTTPClientError):
        return SourceUnreachable(
            f"the camera answered with an HTTP/RTSP error ({type(exc).__name__})"
        )
    code = getattr(exc, "errno", None)
    if code in _UNREACHABLE_ERRNOS:
        return SourceUnreachable(f"cannot reach the camera: {errno.errorcode.get(code, code)}")
    if isinstance(exc, av.error.InvalidDataError | av.error.DecoderNotFoundError):
        if opening and not remote:
            return UnsupportedMedia("the file is not a stream we can read")
        if opening:
            return SourceUnreachable("the camera sent nothing we could read as a stream")
        return SourceError("the source sent data that cannot be parsed")
    if isinstance(exc, av.error.EOFError) or code == errno.EIO:
        return SourceEnded("the source ended the stream")
    if code == errno.ENOENT:
        return SourceUnreachable("no such file")
    if isinstance(exc, av.error.ExitError):
        return SourceStalled("reading the source timed out")
    name = type(exc).__name__
    if opening:
        return SourceUnreachable(f"cannot open the source ({name})")
    return SourceError(f"reading the source failed ({name})")
