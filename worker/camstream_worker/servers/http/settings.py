"""The HTTP server's settings: viewer auth, CORS, the admin surface and connection limits.

Who calls this: both worker commands add these flags (`add_arguments`) and
turn them into one `HttpSettings` (`from_args`): app/config.py for `camstream
run` and `camstream demo`, cluster/cli.py for `camstream worker` (the chart
passes them, see helm/camstream/README.md). server.py, access.py and
listener.py receive the typed values and never read flags. A value that
cannot be used stops the command with one line naming its flag
(camstream.settings.SettingError).

Every limit has its number here, and a test in tests/security/test_http_*.py.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from camstream import settings
from camstream.spec import PLAYBACK_MODES, PlaybackMode

# A connection must deliver a complete request (line and headers) within this
# long of opening, or of its previous response: idle keep-alive connections
# and slow-header (slowloris) clients are closed alike. Players ask for a
# playlist every segment (2 s by default), so 15 s never cuts a watching one.
IDLE_TIMEOUT = 15.0
# Connections served at once, over every client; the next is answered 503
# and closed. Well below the file descriptors a worker has (the RTMP front
# shares them), so running out of them is not how a flood ends.
MAX_CONNECTIONS = 2048
# The request line (a JWT in ?token= fits: a few hundred to ~2000 bytes) and
# each header line; larger is a 400. The header count is aiohttp's limit.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
MAX_HEADERS = 64
# The admin token (metrics, API) read from a file: short tokens are guessable.
MIN_ADMIN_TOKEN_CHARS = 16
JWT_AUDIENCE = "camstream"
# Asymmetric only: a worker holds public keys and can verify but never mint.
JWT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
JWT_LEEWAY = 30.0  # seconds of clock difference allowed on exp and nbf


@dataclass(frozen=True, slots=True)
class Limits:
    idle_timeout: float = IDLE_TIMEOUT
    max_connections: int = MAX_CONNECTIONS
    max_line_bytes: int = MAX_LINE_BYTES
    max_field_bytes: int = MAX_FIELD_BYTES
    max_headers: int = MAX_HEADERS


@dataclass(frozen=True, slots=True)
class JwtSettings:
    """Where the keys that sign viewers' JWTs come from, and what the tokens must say."""

    jwks_url: str | None = None
    keys_file: Path | None = None  # a JWKS document or PEM public keys (a mounted Secret)
    issuer: str | None = None
    audience: str = JWT_AUDIENCE
    algorithms: tuple[str, ...] = JWT_ALGORITHMS
    leeway: float = JWT_LEEWAY


@dataclass(frozen=True, slots=True)
class HttpSettings:
    # For streams whose spec.playback.auth.mode is unset.
    default_mode: PlaybackMode = "none"
    # Refuse to serve streams whose mode is none (a cluster-wide floor).
    require_auth: bool = False
    jwt: JwtSettings | None = None
    # "*" allows any origin for public resources only; a stream that asks who
    # its viewers are is readable cross-origin only by origins listed here.
    cors_origins: tuple[str, ...] = ("*",)
    # The admin surface (/, /api/streams, /metrics): on its own port if set.
    admin_port: int | None = None
    admin_token: str | None = field(default=None, repr=False)
    limits: Limits = field(default_factory=Limits)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("playback access and HTTP limits")
    group.add_argument(
        "--playback-auth",
        choices=PLAYBACK_MODES,
        default=None,
        help="viewer auth of streams whose spec.playback.auth.mode is unset "
        "(default: $CAMSTREAM_PLAYBACK_AUTH, else none)",
    )
    group.add_argument(
        "--require-playback-auth",
        action="store_true",
        help="refuse to serve streams whose viewer auth is none",
    )
    group.add_argument("--jwt-jwks-url", help="JWKS URL of the issuer of viewers' JWTs")
    group.add_argument(
        "--jwt-keys-file", type=Path, help="JWKS document or PEM public key(s) for viewers' JWTs"
    )
    group.add_argument("--jwt-issuer", help="required iss claim of viewers' JWTs")
    group.add_argument(
        "--jwt-audience", default=JWT_AUDIENCE, help="required aud claim of viewers' JWTs"
    )
    group.add_argument(
        "--jwt-algorithms",
        default=",".join(JWT_ALGORITHMS),
        help="accepted JWT algorithms, comma separated (asymmetric ones only)",
    )
    group.add_argument(
        "--cors-origin",
        dest="cors_origins",
        action="append",
        default=None,
        help="origin allowed to read the HLS cross-origin, e.g. https://app.example.com "
        "(repeatable; default *, which covers only streams without viewer auth)",
    )
    group.add_argument(
        "--admin-port",
        type=int,
        default=None,
        help="serve the index page, /api/streams and /metrics on this port only",
    )
    group.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file holding the bearer token that the index page, /api/streams and /metrics ask for",
    )
    group.add_argument("--http-idle-timeout", type=float, default=IDLE_TIMEOUT)
    group.add_argument("--http-max-connections", type=int, default=MAX_CONNECTIONS)
    group.add_argument("--http-max-header-bytes", type=int, default=MAX_FIELD_BYTES)


def from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> HttpSettings:
    mode = cast(
        PlaybackMode,
        args.playback_auth
        or settings.from_env(
            "CAMSTREAM_PLAYBACK_AUTH", _mode, "none", flag="--playback-auth", environ=environ
        ),
    )
    jwt = None
    if args.jwt_jwks_url or args.jwt_keys_file:
        jwt = JwtSettings(
            jwks_url=_jwks_url(args.jwt_jwks_url),
            keys_file=_readable(args.jwt_keys_file, "--jwt-keys-file"),
            issuer=args.jwt_issuer or None,
            audience=args.jwt_audience,
            algorithms=_algorithms(args.jwt_algorithms),
        )
    elif mode == "jwt":
        raise settings.SettingError(
            "--playback-auth", mode, "needs --jwt-jwks-url or --jwt-keys-file"
        )
    limits = Limits(
        idle_timeout=_positive(args.http_idle_timeout, "--http-idle-timeout", 0.5, 3600),
        max_connections=int(_positive(args.http_max_connections, "--http-max-connections", 1, 1e6)),
        max_line_bytes=MAX_LINE_BYTES,
        max_field_bytes=int(
            _positive(args.http_max_header_bytes, "--http-max-header-bytes", 1024, 65536)
        ),
        max_headers=MAX_HEADERS,
    )
    return HttpSettings(
        default_mode=mode,
        require_auth=bool(args.require_playback_auth),
        jwt=jwt,
        cors_origins=tuple(cors_origin(o) for o in (args.cors_origins or ["*"])),
        admin_port=_port(args.admin_port),
        admin_token=_admin_token(args.admin_token_file),
        limits=limits,
    )


def cors_origin(text: str) -> str:
    """`*` or an origin exactly as browsers send it: scheme://host[:port], no path."""
    if text == "*":
        return text
    parts = urlsplit(text)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path
        or parts.query
        or parts.fragment
        or parts.username
    ):
        raise settings.SettingError(
            "--cors-origin", text, "not an origin like https://app.example.com (no path)"
        )
    return text.rstrip("/")


def _mode(text: str) -> PlaybackMode:
    if text not in PLAYBACK_MODES:
        raise ValueError(f"not one of {', '.join(PLAYBACK_MODES)}")
    return cast(PlaybackMode, text)


def _jwks_url(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise settings.SettingError("--jwt-jwks-url", url, "not an http(s) URL")
    return url


def _algorithms(text: str) -> tuple[str, ...]:
    chosen = tuple(a.strip() for a in text.split(",") if a.strip())
    wrong = [a for a in chosen if a not in JWT_ALGORITHMS]
    if not chosen or wrong:
        raise settings.SettingError(
            "--jwt-algorithms", text, f"allowed: {', '.join(JWT_ALGORITHMS)} (asymmetric only)"
        )
    return chosen


def _readable(path: Path | None, flag: str) -> Path | None:
    if path is not None and not path.is_file():
        raise settings.SettingError(flag, str(path), "no such file")
    return path


def _positive(value: float, flag: str, low: float, high: float) -> float:
    if not low <= value <= high:
        raise settings.SettingError(flag, str(value), f"must be from {low:g} to {high:g}")
    return value


def _port(value: int | None) -> int | None:
    if value is not None and not 0 <= value <= 65535:
        raise settings.SettingError("--admin-port", str(value), "not a TCP port")
    return value


def _admin_token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise settings.SettingError(
            "--admin-token-file", str(path), f"cannot be read ({type(exc).__name__})"
        ) from None
    if len(token) < MIN_ADMIN_TOKEN_CHARS:
        # Never quote the token; its length is enough to act on.
        raise settings.SettingError(
            "--admin-token-file",
            str(path),
            f"holds {len(token)} characters, at least {MIN_ADMIN_TOKEN_CHARS} are needed",
        )
    return token
