"""The worker's media exception tree, and the one place FFmpeg errors map into it.

Who calls this: every source raises these; the supervisor decides from the
class alone whether to reconnect or to mark the stream Failed.

    MediaError
     ├── SourceError              transient: reconnect with backoff
     │    ├── SourceUnreachable   could not open a pulled source, whatever the cause
     │    ├── SourceEnded         the camera closed the stream
     │    └── SourceStalled       no packet for stallTimeoutSeconds
     └── PermanentSourceError     needs a fix by a person: stream Failed
          ├── AuthenticationFailed  wrong password or stream key
          ├── UnsupportedMedia      a codec or container we cannot remux
          ├── SourceNotAllowed      a local file outside the worker's file roots
          └── SecretError           a referenced Secret or key is missing
               └── SecretNotAllowed   the Secret did not opt in, or RBAC refuses it

Messages are written here, from the error class and errno, never from the
FFmpeg message: FFmpeg quotes the URL it opened, and a camera URL may carry
credentials.

One answer for every failure to open a pulled source. A stream's author
chooses its URL and reads its status, so a status that told "refused" from
"404" from "not media" from "that address is not allowed" would let the
author map the worker's network through it (an SSRF oracle): every such
failure is `SourceUnreachable` with the one message `UNREACHABLE`, and what
really happened goes to the worker's log only (`detail`). The exceptions:
a camera that refuses the credentials the stream gave it (the author owns
both), and media that opened but that we cannot remux (it is a camera).
"""

from __future__ import annotations

import errno


class MediaError(Exception):
    """Base of the tree; `reason` is a CamelCase word for status and metrics."""

    reason = "MediaError"


class SourceError(MediaError):
    reason = "SourceError"


UNREACHABLE = "could not reach the source or read a stream from it"


class SourceUnreachable(SourceError):
    """Opening a pulled source failed; the message is always UNREACHABLE.

    `detail` says what happened, for the worker's log (an operator's eyes),
    never for the status (the stream author's).
    """

    reason = "SourceUnreachable"

    def __init__(self, detail: str) -> None:
        super().__init__(UNREACHABLE)
        self.detail = detail

    def __reduce__(self) -> tuple[type[SourceUnreachable], tuple[str]]:
        return (type(self), (self.detail,))


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


class SourceNotAllowed(PermanentSourceError):
    reason = "SourceNotAllowed"


class SecretError(PermanentSourceError):
    reason = "SecretMissing"


class SecretNotAllowed(SecretError):
    reason = "SecretNotAllowed"


_UNREACHABLE_ERRNOS = {
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ETIMEDOUT,
    errno.ECONNRESET,
    errno.EADDRNOTAVAIL,
}


def from_ffmpeg(
    exc: BaseException, *, opening: bool, remote: bool = True, credentials: bool = False
) -> MediaError:
    """Map an exception raised by PyAV to our tree, with a URL-free message.

    `remote`: the source is a camera on the network. Opening one fails with
    the one uniform SourceUnreachable (see the module's docstring), except
    when the camera refuses the `credentials` the stream gave it. Unreadable
    data from a camera later on is transient (booting, hung, timed out); from
    a file it will not change.
    """
    if isinstance(exc, MediaError):
        return exc
    import av  # here: the exception came from PyAV, which is loaded; the front never is

    denied = isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError)
    if denied and credentials:
        return AuthenticationFailed("the camera refused the credentials (401/403)")
    if opening and remote:
        return SourceUnreachable(_what_happened(exc))
    code = getattr(exc, "errno", None)
    # EINVAL while opening a file: FFmpeg's "format not on whitelist" (a
    # playlist or a list of files, which a file source may not follow).
    refused_format = opening and code == errno.EINVAL
    if refused_format or isinstance(exc, av.error.InvalidDataError | av.error.DecoderNotFoundError):
        if opening:
            return UnsupportedMedia("the file is not a stream we can read")
        return SourceError("the source sent data that cannot be parsed")
    if isinstance(exc, av.error.EOFError) or code == errno.EIO:
        return SourceEnded("the source ended the stream")
    if isinstance(exc, av.error.ExitError):
        return SourceStalled("reading the source timed out")
    name = type(exc).__name__
    if opening:  # a local file: the worker's own operator wrote its path
        return SourceError(
            "no such file" if code == errno.ENOENT else f"cannot open the file ({name})"
        )
    if code in _UNREACHABLE_ERRNOS:
        return SourceError(f"the connection to the source failed ({errno.errorcode[code]})")
    return SourceError(f"reading the source failed ({name})")


def _what_happened(exc: BaseException) -> str:
    """For the log: the error's class and errno name, never FFmpeg's text (it quotes the URL)."""
    code = getattr(exc, "errno", None)
    name = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    return f"{type(exc).__name__}{f' ({name})' if name else ''}"
