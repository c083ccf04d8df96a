"""`camstream sign NS/NAME --for 1h`: print a signed playback URL for a stream.

Who calls this: people, scripts and the kubectl plugin's `open` (which puts
its own base URL in front with --base-url, or reads --token-only). It makes
a token with camstream.playback_tokens for a stream whose
`spec.playback.auth.mode` is `signed`, with that stream's key, found where
the worker finds it:

    --key-file FILE   the key itself (a Secret's value, e.g. from a vault)
    -f MANIFESTS      standalone mode: the CameraStream in these files names
                      its Secret, resolved as `camstream run` does (environment,
                      --secrets-dir, Secret manifests)
    (neither)         the cluster: the CameraStream and its Secret read with
                      your kubeconfig, so your RBAC decides: whoever may read
                      the namespace's signing Secret may sign its URLs

The URL opens the stream's player page; --playlist gives the HLS playlist
instead (for players and ffprobe). A URL is valid for at most MAX_VALIDITY:
a longer-lived one is a password in disguise. Nothing is printed but the
URL (or token); errors go to stderr without the key.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from pathlib import Path
from typing import Any

from camstream import playback_tokens, wire
from camstream.spec import SpecError, StreamKey, parse_stream

MAX_VALIDITY = 30 * 86400  # 30 days
_DURATION_RE = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class SignError(Exception):
    """Why no URL could be made; the message holds no key material."""


def add_parser(subparsers: Any) -> None:
    sign = subparsers.add_parser(
        "sign", help="print a signed playback URL for a stream (spec.playback.auth.mode: signed)"
    )
    sign.add_argument("stream", help="NAMESPACE/NAME of the CameraStream")
    sign.add_argument(
        "--for",
        dest="validity",
        type=duration,
        default=3600,
        help="how long the URL plays: 90s, 15m, 1h, 2d (default 1h, at most 30d)",
    )
    sign.add_argument(
        "--namespace-wide",
        action="store_true",
        help="the URL's token also plays every other stream of the namespace with the same key",
    )
    sign.add_argument(
        "--base-url", default="", help="prefix, e.g. https://video.example.com (default: none)"
    )
    sign.add_argument("--playlist", action="store_true", help="the HLS playlist, not the page")
    sign.add_argument("--token-only", action="store_true", help="print only the token")
    where = sign.add_mutually_exclusive_group()
    where.add_argument("--key-file", type=Path, help="file holding the signing key")
    where.add_argument(
        "-f",
        "--file",
        dest="files",
        action="append",
        type=Path,
        help="standalone manifests (CameraStream and Secret YAML) to find the key in",
    )
    sign.add_argument("--secrets-dir", type=Path, help="with -f: the folder of Secrets as files")
    sign.set_defaults(run=run)


def duration(text: str) -> int:
    """Seconds from 90s, 15m, 1h, 2d (or a plain number of seconds), 1 s to 30 days."""
    match = _DURATION_RE.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r}: not a duration like 90s, 15m, 1h or 2d")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if not 1 <= seconds <= MAX_VALIDITY:
        raise argparse.ArgumentTypeError(
            f"{text!r}: a signed URL is valid for 1 s to 30 days (a longer one is a password)"
        )
    return seconds


def stream_key(text: str) -> StreamKey:
    """NAMESPACE/NAME as Kubernetes names (the URL's own rules, servers/http/paths.py)."""
    from camstream_worker.servers.http.paths import PathRejected, parse_stream_key

    namespace, _, name = text.partition("/")
    try:
        return parse_stream_key(namespace, name)
    except PathRejected:
        raise SignError(f"{text!r}: name the stream as NAMESPACE/NAME (Kubernetes names)") from None


def signed_url(
    key: bytes,
    stream: StreamKey,
    *,
    expires: int,
    namespace_wide: bool = False,
    base_url: str = "",
    playlist: bool = False,
) -> tuple[str, str]:
    """(url, token) for `stream`, valid until `expires` (unix seconds)."""
    grant = playback_tokens.Grant(
        stream.namespace, None if namespace_wide else stream.name, expires
    )
    try:
        token = playback_tokens.sign(key, grant)
    except ValueError as exc:
        raise SignError(str(exc)) from None
    path = (
        wire.playlist_path(stream.namespace, stream.name)
        if playlist
        else wire.stream_path(stream.namespace, stream.name)
    )
    return f"{base_url.rstrip('/')}{path}?{wire.TOKEN_PARAM}={token}", token


def run(args: argparse.Namespace) -> int:
    try:
        stream = stream_key(args.stream)
        key = playback_tokens.signing_key(asyncio.run(_key_text(args, stream)))
        url, token = signed_url(
            key,
            stream,
            expires=int(time.time()) + args.validity,
            namespace_wide=args.namespace_wide,
            base_url=args.base_url,
            playlist=args.playlist,
        )
    except (SignError, playback_tokens.KeyTooShort) as exc:
        print(f"camstream sign: {exc}", file=sys.stderr)
        return 2
    print(token if args.token_only else url)
    return 0


async def _key_text(args: argparse.Namespace, stream: StreamKey) -> str:
    if args.key_file is not None:
        try:
            return str(args.key_file.read_text()).strip()
        except OSError as exc:
            raise SignError(f"{args.key_file}: cannot be read ({type(exc).__name__})") from None
    if args.files:
        return await _from_manifests(args.files, args.secrets_dir, stream)
    return await _from_cluster(stream)


async def _from_manifests(files: list[Path], secrets_dir: Path | None, stream: StreamKey) -> str:
    # The standalone worker's own readers: the key is found exactly where it looks.
    from camstream_worker.app.standalone import load_manifests
    from camstream_worker.errors import SecretError
    from camstream_worker.secrets.static import StaticSecrets

    manifests = load_manifests(files)
    spec = manifests.streams.get(stream)
    if spec is None:
        raise SignError(f"no CameraStream {stream} in {', '.join(map(str, files))}")
    _needs_signed(spec.playback.auth.mode, stream)
    secrets = StaticSecrets(manifests.secrets, secrets_dir=secrets_dir)
    try:
        return await secrets.get(stream.namespace, spec.playback.auth.signing_key)
    except SecretError as exc:
        raise SignError(str(exc)) from None


async def _from_cluster(stream: StreamKey) -> str:
    import base64
    import binascii

    from camstream import kubeapi

    try:
        credentials = kubeapi.load_credentials()
    except Exception as exc:  # the kubernetes library's many ways of saying "no config"
        raise SignError(
            f"no Kubernetes credentials ({type(exc).__name__}); use -f or --key-file"
        ) from None
    async with kubeapi.KubeApi(credentials) as api:
        try:
            body = await api.get(kubeapi.stream_path(stream.namespace, stream.name))
        except kubeapi.KubeError as exc:
            raise SignError(f"CameraStream {stream}: {_kube_reason(exc)}") from None
        try:
            spec = parse_stream(body)
        except SpecError as exc:
            raise SignError(f"CameraStream {stream}: {exc}") from None
        _needs_signed(spec.playback.auth.mode, stream)
        ref = spec.playback.auth.signing_key
        where = f"Secret {stream.namespace}/{ref.name} key {ref.key}"
        try:
            secret = await api.get(kubeapi.secret_path(stream.namespace, ref.name))
        except kubeapi.KubeError as exc:
            raise SignError(f"{where}: {_kube_reason(exc)}") from None
    raw = (secret.get("data") or {}).get(ref.key)
    if raw is None:
        raise SignError(f"{where}: no such key")
    try:
        return base64.b64decode(raw).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise SignError(f"{where}: not valid UTF-8 text") from None


def _needs_signed(mode: str | None, stream: StreamKey) -> None:
    """A stream that does not ask for signed URLs would not check the token:
    say so rather than print a URL that only looks protected. An unset mode
    follows the workers' default, which this command cannot see: allowed."""
    if mode not in (None, "signed"):
        raise SignError(
            f"{stream} has spec.playback.auth.mode {mode}, not signed: "
            "a signed URL would mean nothing there"
        )


def _kube_reason(exc: Exception) -> str:
    from camstream import kubeapi

    if isinstance(exc, kubeapi.NotFound):
        return "not found"
    if isinstance(exc, kubeapi.Forbidden):
        return "you may not read it (RBAC)"
    return type(exc).__name__
