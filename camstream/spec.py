"""CameraStream manifests parsed once into typed, frozen values.

Who calls this: the worker (standalone mode reads YAML files, cluster mode
reads watched resources), the operator (validation beyond the schema) and the
CLI. Everything downstream works on `StreamSpec`, never on raw dicts.

The defaults mirror crds/camerastream.yaml so that standalone mode, which has
no API server to apply them, behaves exactly as a cluster does. The checks the
CRD also makes with CEL rules (Secret reference names and keys, credentials
only over TLS, no local files in a cluster) come from spec_rules.py, with the
CRD's patterns and messages. The rest are the checks a schema cannot express
(URL shape, credentials inline in a URL). Each error names the field it is
about and never echoes a URL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypedDict
from urllib.parse import urlsplit

from camstream import wire
from camstream.spec_rules import (
    INSECURE_CREDENTIALS_MESSAGE,
    LOCAL_FILES_MESSAGE,
    SRT_URL_PASSPHRASE_MESSAGE,
    SRT_URL_PASSPHRASE_PATTERN,
    TLS_URL_PATTERN,
    secret_key_problem,
    secret_name_problem,
)

Protocol = Literal["rtsp", "rtmp", "srt", "synthetic", "file", "http"]
PROTOCOLS: tuple[str, ...] = ("rtsp", "rtmp", "srt", "synthetic", "file", "http")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_URL_SCHEMES: dict[str, tuple[str, ...]] = {
    "rtsp": ("rtsp", "rtsps"),
    "http": ("http", "https"),
    "file": ("", "file"),
    "srt": ("srt",),
}


class SpecError(ValueError):
    """A CameraStream that cannot run; `field` names the offending setting."""

    def __init__(self, field_path: str, message: str) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message


class CameraStreamBody(TypedDict, total=False):
    """The raw resource as the API server or a YAML file gives it."""

    apiVersion: str
    kind: str
    metadata: dict[str, Any]
    spec: dict[str, Any]
    status: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StreamKey:
    """Identity of a stream: the namespaced name of its CameraStream."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A key inside a Secret (cluster) or a secrets folder/env (standalone)."""

    name: str
    key: str


@dataclass(frozen=True, slots=True)
class Credentials:
    username: SecretRef
    password: SecretRef


@dataclass(frozen=True, slots=True)
class SyntheticOptions:
    width: int = 640
    height: int = 360
    fps: int = 25
    bitrate_kbps: int = 1000
    codec: Literal["h264", "hevc"] = "h264"
    audio: bool = True


@dataclass(frozen=True, slots=True)
class SrtOptions:
    """spec.source.srt: how an SRT camera is received (push) or called (pull, with a url)."""

    passphrase: SecretRef | None = None
    latency_ms: int = 120
    key_length: int = 16


@dataclass(frozen=True, slots=True)
class SourceSpec:
    protocol: Protocol
    url: str | None = None
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    credentials: Credentials | None = None
    # The author accepts sending credentials readable on the wire (rtsp://, http://).
    allow_insecure_credentials: bool = False
    stream_key: SecretRef | None = None
    srt: SrtOptions = field(default_factory=SrtOptions)
    synthetic: SyntheticOptions = field(default_factory=SyntheticOptions)
    stall_timeout_seconds: int = 10


@dataclass(frozen=True, slots=True)
class HlsOptions:
    segment_seconds: int = 2
    window_segments: int = 6
    segment_type: Literal["mpegts", "fmp4"] = "mpegts"
    program_date_time: bool = True


@dataclass(frozen=True, slots=True)
class Rendition:
    name: str
    height: int
    video_bitrate_kbps: int


@dataclass(frozen=True, slots=True)
class TranscodeOptions:
    enabled: bool = False
    renditions: tuple[Rendition, ...] = ()


@dataclass(frozen=True, slots=True)
class ThumbnailOptions:
    enabled: bool = False
    interval_seconds: int = 10


# -- spec.playback: who may watch (servers/http/access.py enforces it)

PlaybackMode = Literal["none", "signed", "jwt"]
PLAYBACK_MODES: tuple[str, ...] = ("none", "signed", "jwt")
# The namespace's playback signing key, when a stream names none: one Secret
# per namespace serves every stream in it (per-namespace viewer auth).
DEFAULT_SIGNING_SECRET = "camstream-playback"
DEFAULT_SIGNING_KEY = "signingKey"
# The same words as the CRD's x-kubernetes-validations messages, so a bad
# value reads alike from kubectl and from `camstream run`.
PLAYBACK_SECRET_NAME_MESSAGE = (
    "must be the name of a Secret in the stream's namespace "
    "(lower-case letters, digits, '-' and '.', at most 253)"
)
PLAYBACK_SECRET_KEY_MESSAGE = (
    "must be a key of a Secret (letters, digits, '-', '_' and '.', at most 253)"
)
# As in the CRD's CEL rules ("[.]" rather than an escaped dot, so the YAML reads alike).
_SECRET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")


@dataclass(frozen=True, slots=True)
class PlaybackAuth:
    """How viewers of one stream prove they may watch it.

    `mode` None: the worker's default (its --playback-auth setting).
    `signing_key`: for `signed`, the key in the stream's own namespace."""

    mode: PlaybackMode | None = None
    signing_key: SecretRef = SecretRef(DEFAULT_SIGNING_SECRET, DEFAULT_SIGNING_KEY)


@dataclass(frozen=True, slots=True)
class PlaybackOptions:
    auth: PlaybackAuth = field(default_factory=PlaybackAuth)


@dataclass(frozen=True, slots=True)
class RecordingOptions:
    """spec.recording: keep the stream's past in object storage (see camstream/recording/)."""

    enabled: bool = False
    max_age_hours: int = 168  # retention.maxAgeHours: a week
    max_bytes: int | None = None  # retention.maxSize, in bytes; None: no cap
    group_seconds: int = 60  # segments are grouped into objects of about this long
    dvr_minutes: int = 5  # the live DVR playlist (dvr.m3u8) reaches this far back; 0: none


@dataclass(frozen=True, slots=True)
class RecordingDefaults:
    """What a stream without spec.recording gets: the chart's default, or its namespace's."""

    default: RecordingOptions = field(default_factory=RecordingOptions)
    namespaces: tuple[tuple[str, RecordingOptions], ...] = ()

    def for_namespace(self, namespace: str) -> RecordingOptions:
        return dict(self.namespaces).get(namespace, self.default)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    key: StreamKey
    source: SourceSpec
    enabled: bool = True
    hls: HlsOptions = field(default_factory=HlsOptions)
    transcode: TranscodeOptions = field(default_factory=TranscodeOptions)
    thumbnail: ThumbnailOptions = field(default_factory=ThumbnailOptions)
    playback: PlaybackOptions = field(default_factory=PlaybackOptions)
    generation: int = 0
    # None: the stream says nothing, so the site's default applies (with_recording_default).
    recording: RecordingOptions | None = None


DEFAULT_RENDITIONS: tuple[Rendition, ...] = (
    Rendition("720p", 720, 2500),
    Rendition("360p", 360, 800),
)


def parse_stream(
    body: Mapping[str, Any], default_namespace: str = "default", *, local_files: bool = False
) -> StreamSpec:
    """Parse one CameraStream body; raise SpecError naming the bad field.

    `local_files`: `protocol: file` may run here. Only standalone mode says so
    (and confines it to its file roots); in a cluster a stream author must not
    read the worker's disk, so the default refuses it.
    """
    if body.get("kind", wire.KIND) != wire.KIND:
        raise SpecError("kind", f"expected {wire.KIND}, got {body.get('kind')!r}")
    metadata = _mapping(body.get("metadata"), "metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name) or len(name) > 63:
        raise SpecError("metadata.name", "must be a DNS label (lower-case letters, digits, '-')")
    namespace = metadata.get("namespace") or default_namespace
    if not isinstance(namespace, str) or not _NAME_RE.match(namespace):
        raise SpecError("metadata.namespace", "must be a DNS label")
    spec = _mapping(body.get("spec"), "spec")
    return StreamSpec(
        key=StreamKey(namespace, name),
        source=_parse_source(_mapping(spec.get("source"), "spec.source"), local_files),
        enabled=_bool(spec, "enabled", True, "spec"),
        hls=_parse_hls(_mapping(spec.get("hls", {}), "spec.hls")),
        transcode=_parse_transcode(_mapping(spec.get("transcode", {}), "spec.transcode")),
        thumbnail=_parse_thumbnail(_mapping(spec.get("thumbnail", {}), "spec.thumbnail")),
        playback=_parse_playback(_mapping(spec.get("playback", {}), "spec.playback")),
        generation=int(metadata.get("generation") or 0),
        recording=(
            parse_recording(_mapping(spec["recording"], "spec.recording"))
            if spec.get("recording") is not None
            else None
        ),
    )


# -- recording: the same rules as the CRD's schema and CEL rules, the same messages

_SIZE_RE = re.compile(r"^[1-9][0-9]{0,15}(Ki|Mi|Gi|Ti)?$")
_SIZE_UNITS = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40}
SIZE_MESSAGE = "must be a size like 500Mi or 20Gi (a whole number, optionally Ki, Mi, Gi or Ti)"


def parse_recording(raw: Mapping[str, Any], path: str = "spec.recording") -> RecordingOptions:
    """spec.recording (or a default of the same shape); SpecError naming the field."""
    enabled = raw.get("enabled")
    if not isinstance(enabled, bool):
        raise SpecError(f"{path}.enabled", "is required: true or false")
    retention = _mapping(raw.get("retention", {}), f"{path}.retention")
    max_size = retention.get("maxSize")
    max_bytes = None
    if max_size is not None:
        match = _SIZE_RE.match(max_size) if isinstance(max_size, str) else None
        if match is None:
            raise SpecError(f"{path}.retention.maxSize", SIZE_MESSAGE)
        max_bytes = (
            int(max_size[: len(max_size) - len(match.group(1) or "")])
            * _SIZE_UNITS[match.group(1) or ""]
        )
    return RecordingOptions(
        enabled=enabled,
        max_age_hours=_int(retention, "maxAgeHours", 168, 1, 87600, f"{path}.retention"),
        max_bytes=max_bytes,
        group_seconds=_int(raw, "groupSeconds", 60, 10, 600, path),
        dvr_minutes=_int(raw, "dvrMinutes", 5, 0, 120, path),
    )


def parse_recording_defaults(raw: Mapping[str, Any], path: str) -> RecordingDefaults:
    """{"default": {...}, "namespaces": {"ns": {...}}}: each value shaped like spec.recording."""
    default = raw.get("default")
    namespaces = _mapping(raw.get("namespaces", {}), f"{path}.namespaces")
    return RecordingDefaults(
        default=(
            parse_recording(_mapping(default, f"{path}.default"), f"{path}.default")
            if default is not None
            else RecordingOptions()
        ),
        namespaces=tuple(
            (str(ns), parse_recording(_mapping(value, f"{path}.namespaces.{ns}"), f"{path}.{ns}"))
            for ns, value in sorted(namespaces.items())
        ),
    )


def with_recording_default(spec: StreamSpec, defaults: RecordingDefaults) -> StreamSpec:
    """The spec with spec.recording filled in from the site's default when it says nothing."""
    if spec.recording is not None:
        return spec
    return replace(spec, recording=defaults.for_namespace(spec.key.namespace))


def _parse_source(raw: Mapping[str, Any], local_files: bool) -> SourceSpec:
    protocol = raw.get("protocol")
    if protocol not in PROTOCOLS:
        raise SpecError("spec.source.protocol", f"must be one of {', '.join(PROTOCOLS)}")
    if protocol == "file" and not local_files:
        raise SpecError("spec.source.protocol", LOCAL_FILES_MESSAGE)
    url = raw.get("url")
    if url is not None and not isinstance(url, str):
        raise SpecError("spec.source.url", "must be a string")
    if protocol in _URL_SCHEMES and (protocol != "srt" or url is not None):
        url = _check_url(url, protocol)  # srt: a url makes it a pull, none a push
    transport = raw.get("rtspTransport", "tcp")
    if transport not in ("tcp", "udp"):
        raise SpecError("spec.source.rtspTransport", "must be tcp or udp")
    credentials = None
    if "credentialsSecretRef" in raw:
        path = "spec.source.credentialsSecretRef"
        ref = _mapping(raw["credentialsSecretRef"], path)
        secret = _secret_name(ref, path)
        credentials = Credentials(
            username=SecretRef(secret, _secret_key(ref, "usernameKey", "username", path)),
            password=SecretRef(secret, _secret_key(ref, "passwordKey", "password", path)),
        )
    allow_insecure = _bool(raw, "allowInsecureCredentials", False, "spec.source")
    if (
        credentials is not None
        and protocol in ("rtsp", "http")
        and not allow_insecure
        and not re.match(TLS_URL_PATTERN, str(url))
    ):
        raise SpecError("spec.source", INSECURE_CREDENTIALS_MESSAGE)
    stream_key = None
    if "streamKeySecretRef" in raw:
        path = "spec.source.streamKeySecretRef"
        ref = _mapping(raw["streamKeySecretRef"], path)
        stream_key = SecretRef(_secret_name(ref, path), _secret_key(ref, "key", "streamKey", path))
    if protocol == "rtmp" and stream_key is None:
        raise SpecError(
            "spec.source.streamKeySecretRef",
            "an rtmp source needs a stream key Secret (the key the camera must present)",
        )
    srt = _parse_srt(_mapping(raw.get("srt", {}), "spec.source.srt"))
    if protocol == "srt" and url is None and srt.passphrase is None:
        raise SpecError(
            "spec.source.srt.passphraseSecretRef",
            "a pushed srt source needs a passphrase Secret (the passphrase the camera must use)",
        )
    syn = _mapping(raw.get("synthetic", {}), "spec.source.synthetic")
    path = "spec.source.synthetic"
    synthetic = SyntheticOptions(
        width=_int(syn, "width", 640, 16, 3840, path),
        height=_int(syn, "height", 360, 16, 2160, path),
        fps=_int(syn, "fps", 25, 1, 60, path),
        bitrate_kbps=_int(syn, "bitrateKbps", 1000, 50, 20000, path),
        codec=_choice(syn, "codec", "h264", ("h264", "hevc"), path),
        audio=_bool(syn, "audio", True, path),
    )
    return SourceSpec(
        protocol=protocol,
        url=url,
        rtsp_transport=transport,
        credentials=credentials,
        allow_insecure_credentials=allow_insecure,
        stream_key=stream_key,
        srt=srt,
        synthetic=synthetic,
        stall_timeout_seconds=_int(raw, "stallTimeoutSeconds", 10, 2, 300, "spec.source"),
    )


def _parse_srt(raw: Mapping[str, Any]) -> SrtOptions:
    path = "spec.source.srt"
    passphrase = None
    if "passphraseSecretRef" in raw:
        ref_path = f"{path}.passphraseSecretRef"
        ref = _mapping(raw["passphraseSecretRef"], ref_path)
        passphrase = SecretRef(
            _secret_name(ref, ref_path), _secret_key(ref, "key", "passphrase", ref_path)
        )
    key_length = raw.get("keyLength", 16)
    if key_length not in (16, 24, 32) or isinstance(key_length, bool):
        raise SpecError(f"{path}.keyLength", "must be one of 16, 24, 32")
    return SrtOptions(
        passphrase=passphrase,
        latency_ms=_int(raw, "latencyMs", 120, 20, 8000, path),
        key_length=key_length,
    )


def _check_url(url: str | None, protocol: str) -> str:
    if not url:
        raise SpecError("spec.source.url", f"a {protocol} source needs a url")
    parts = urlsplit(url)
    if parts.scheme not in _URL_SCHEMES[protocol]:
        allowed = ", ".join(s + "://" for s in _URL_SCHEMES[protocol] if s)
        raise SpecError("spec.source.url", f"a {protocol} source needs a {allowed} url")
    if parts.username or parts.password:
        # Never echo the URL back: it holds the very secret we refuse.
        raise SpecError(
            "spec.source.url",
            "credentials must not be written in the url; use spec.source.credentialsSecretRef",
        )
    if protocol != "file" and not parts.hostname:
        raise SpecError("spec.source.url", "has no host")
    if protocol == "srt":
        if re.search(SRT_URL_PASSPHRASE_PATTERN, url):
            # The CRD's rule, to the letter; never echo the url (it holds the secret).
            raise SpecError("spec.source.url", SRT_URL_PASSPHRASE_MESSAGE)
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is None or parts.path not in ("", "/"):
            raise SpecError("spec.source.url", "an srt url is srt://host:port")
    return url


def _secret_name(ref: Mapping[str, Any], path: str) -> str:
    name = ref.get("name")
    if name is None:
        raise SpecError(f"{path}.name", "is required")
    problem = secret_name_problem(name)
    if problem:
        raise SpecError(f"{path}.name", problem)
    return str(name)


def _secret_key(ref: Mapping[str, Any], field_name: str, default: str, path: str) -> str:
    key = ref.get(field_name, default)
    problem = secret_key_problem(key)
    if problem:
        raise SpecError(f"{path}.{field_name}", problem)
    return str(key)


def _parse_hls(raw: Mapping[str, Any]) -> HlsOptions:
    path = "spec.hls"
    return HlsOptions(
        segment_seconds=_int(raw, "segmentSeconds", 2, 1, 10, path),
        window_segments=_int(raw, "windowSegments", 6, 2, 60, path),
        segment_type=_choice(raw, "segmentType", "mpegts", ("mpegts", "fmp4"), path),
        program_date_time=_bool(raw, "programDateTime", True, path),
    )


def _parse_transcode(raw: Mapping[str, Any]) -> TranscodeOptions:
    enabled = _bool(raw, "enabled", False, "spec.transcode")
    items = raw.get("renditions") or []
    if not isinstance(items, list) or len(items) > 4:
        raise SpecError("spec.transcode.renditions", "must be a list of at most 4 renditions")
    renditions: list[Rendition] = []
    for index, item in enumerate(items):
        path = f"spec.transcode.renditions[{index}]"
        item = _mapping(item, path)
        name = _str(item, "name", None, path)
        if not re.match(r"^[a-z0-9][a-z0-9-]{0,30}$", name):
            raise SpecError(f"{path}.name", "must be a short lower-case name like 720p")
        renditions.append(
            Rendition(
                name=name,
                height=_int(item, "height", None, 90, 2160, path),
                video_bitrate_kbps=_int(item, "videoBitrateKbps", None, 50, 20000, path),
            )
        )
    if len({r.name for r in renditions}) != len(renditions):
        raise SpecError("spec.transcode.renditions", "rendition names must be unique")
    if enabled and not renditions:
        renditions = list(DEFAULT_RENDITIONS)
    return TranscodeOptions(enabled=enabled, renditions=tuple(renditions))


def _parse_thumbnail(raw: Mapping[str, Any]) -> ThumbnailOptions:
    path = "spec.thumbnail"
    return ThumbnailOptions(
        enabled=_bool(raw, "enabled", False, path),
        interval_seconds=_int(raw, "intervalSeconds", 10, 1, 3600, path),
    )


def _parse_playback(raw: Mapping[str, Any]) -> PlaybackOptions:
    auth = _mapping(raw.get("auth", {}), "spec.playback.auth")
    path = "spec.playback.auth"
    mode = auth.get("mode")
    if mode is not None and mode not in PLAYBACK_MODES:
        raise SpecError(f"{path}.mode", f"must be one of {', '.join(PLAYBACK_MODES)}")
    ref = _mapping(auth.get("signingKeySecretRef", {}), f"{path}.signingKeySecretRef")
    ref_path = f"{path}.signingKeySecretRef"
    name = ref.get("name", DEFAULT_SIGNING_SECRET)
    if not isinstance(name, str) or len(name) > 253 or not _SECRET_NAME_RE.match(name):
        raise SpecError(f"{ref_path}.name", PLAYBACK_SECRET_NAME_MESSAGE)
    key = ref.get("key", DEFAULT_SIGNING_KEY)
    if not isinstance(key, str) or len(key) > 253 or not _SECRET_KEY_RE.match(key):
        raise SpecError(f"{ref_path}.key", PLAYBACK_SECRET_KEY_MESSAGE)
    return PlaybackOptions(PlaybackAuth(mode=mode, signing_key=SecretRef(name, key)))


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if value is None:
        raise SpecError(path, "is required")
    if not isinstance(value, Mapping):
        raise SpecError(path, "must be an object")
    return value


def _bool(raw: Mapping[str, Any], key: str, default: bool, path: str) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{path}.{key}", "must be true or false")
    return value


def _int(
    raw: Mapping[str, Any], key: str, default: int | None, low: int, high: int, path: str
) -> int:
    value = raw.get(key, default)
    if value is None:
        raise SpecError(f"{path}.{key}", "is required")
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{path}.{key}", f"must be an integer from {low} to {high}")
    return value


def _str(raw: Mapping[str, Any], key: str, default: str | None, path: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str) or not value:
        raise SpecError(f"{path}.{key}", "must be a non-empty string")
    return value


def _choice(
    raw: Mapping[str, Any], key: str, default: str, choices: tuple[str, ...], path: str
) -> Any:
    value = raw.get(key, default)
    if value not in choices:
        raise SpecError(f"{path}.{key}", f"must be one of {', '.join(choices)}")
    return value
