"""Who may watch (servers/http/access.py), CORS (cors.py) and the HTTP settings.

PlaybackAccess is driven with parsed CameraStream specs and the standalone
Secret resolver (real StaticSecrets over Secret manifests), time passed in:
a table of streams x presented tokens -> allowed, or the status and reason.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from camstream import playback_tokens as tokens
from camstream.settings import SettingError
from camstream.spec import StreamKey, StreamSpec, parse_stream
from camstream_worker.secrets.static import StaticSecrets
from camstream_worker.servers.http import settings as http_settings
from camstream_worker.servers.http.access import PlaybackAccess, Refused, admin_allowed
from camstream_worker.servers.http.cors import CorsPolicy
from camstream_worker.servers.http.settings import HttpSettings

NOW = 1_900_000_000
NS_KEY = "n" * 40  # the namespace's key (Secret camstream-playback)
OWN_KEY = "o" * 40  # one stream's own key


def stream(name: str, namespace: str = "site-a", **auth: Any) -> StreamSpec:
    body = {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"source": {"protocol": "synthetic"}, "playback": {"auth": auth}},
    }
    return parse_stream(body)


SPECS = {
    s.key: s
    for s in (
        stream("public", mode="none"),
        stream("door", mode="signed"),
        stream("gate", mode="signed"),
        stream("vault", mode="signed", signingKeySecretRef={"name": "vault-key", "key": "k"}),
        stream("nokey", namespace="site-b", mode="signed"),
        stream("short", namespace="site-c", mode="signed"),
        stream("inherits"),
    )
}
SECRETS = StaticSecrets(
    [
        {"metadata": {"name": "camstream-playback", "namespace": "site-a"},
         "stringData": {"signingKey": NS_KEY}},
        {"metadata": {"name": "vault-key", "namespace": "site-a"}, "stringData": {"k": OWN_KEY}},
        {"metadata": {"name": "camstream-playback", "namespace": "site-c"},
         "stringData": {"signingKey": "too-short"}},
    ],
    environ={},
)  # fmt: skip


class Specs:
    def spec(self, key: StreamKey) -> StreamSpec | None:
        return SPECS.get(key)


def access(**settings: Any) -> PlaybackAccess:
    return PlaybackAccess(
        HttpSettings(**settings), specs=Specs(), secrets=SECRETS, clock=lambda: NOW
    )


def signed(key: str, name: str | None, namespace: str = "site-a", expires: int = NOW + 60) -> str:
    return tokens.sign(key.encode(), tokens.Grant(namespace, name, expires))


CASES = [
    # stream, query token, Authorization header -> None (allowed) or (status, reason)
    ("public", None, None, None),
    ("door", None, None, (401, "token_missing")),
    ("door", signed(NS_KEY, "door"), None, None),
    ("door", None, "Bearer " + signed(NS_KEY, "door"), None),
    ("door", signed(NS_KEY, None), None, None),  # namespace-wide
    ("door", signed(NS_KEY, "gate"), None, (403, "wrong_stream")),
    ("door", signed(NS_KEY, "door", expires=NOW), None, (401, "expired")),
    ("door", signed(OWN_KEY, "door"), None, (401, "bad_signature")),
    ("door", signed(NS_KEY, "door")[:-2] + "AA", None, (401, "bad_signature")),
    ("door", "garbage", None, (401, "malformed")),
    ("door", None, "Basic dXNlcjpwYXNz", (401, "token_missing")),
    ("vault", signed(NS_KEY, "vault"), None, (401, "bad_signature")),  # its own key
    ("vault", signed(OWN_KEY, "vault"), None, None),
    ("nokey", signed(NS_KEY, "nokey", namespace="site-b"), None, (503, "auth_unavailable")),
    ("short", signed("s" * 40, "short", namespace="site-c"), None, (503, "auth_unavailable")),
    ("inherits", None, None, None),  # the worker's default: none
]


@pytest.mark.parametrize(("name", "query", "header", "expected"), CASES)
async def test_table(name: str, query: str | None, header: str | None, expected) -> None:
    namespace = {"nokey": "site-b", "short": "site-c"}.get(name, "site-a")
    gate = access()
    try:
        result = await gate.check(
            StreamKey(namespace, name), query_token=query, authorization=header
        )
    except Refused as refused:
        assert (refused.status, refused.reason) == expected
        assert NS_KEY not in refused.message and OWN_KEY not in refused.message
        assert gate.refused[refused.reason] == 1
        return
    assert expected is None
    assert result.protected == (name not in ("public", "inherits"))
    # Only a token that came in the URL is carried on into playlists.
    assert result.carry == (query if result.protected else None)


async def test_the_default_mode_and_the_floor() -> None:
    strict = access(default_mode="signed")
    with pytest.raises(Refused) as caught:
        await strict.check(StreamKey("site-a", "inherits"), query_token=None, authorization=None)
    assert caught.value.status == 401
    # Unknown streams follow the default too: no probing names without a token.
    with pytest.raises(Refused) as caught:
        await strict.check(StreamKey("site-a", "nosuch"), query_token=None, authorization=None)
    assert caught.value.status == 401
    floor = access(require_auth=True)
    with pytest.raises(Refused) as caught:
        await floor.check(StreamKey("site-a", "public"), query_token=None, authorization=None)
    assert (caught.value.status, caught.value.reason) == (403, "auth_required")


async def test_the_past_of_a_stream_nobody_here_knows_is_never_public() -> None:
    """Recordings outlive their spec: a deleted stream's past needs the namespace's key."""
    open_default = access()
    gone, public, inherits = (StreamKey("site-a", n) for n in ("gone", "public", "inherits"))
    assert open_default.mode_of(gone) == "none"  # live: nothing to hide (a 404 follows)
    assert open_default.mode_of(gone, past=True) == "signed"
    # A stream this worker knows keeps its own mode, or the default, for its past too.
    assert open_default.mode_of(public, past=True) == "none"
    assert open_default.mode_of(inherits, past=True) == "none"
    assert access(default_mode="jwt").mode_of(gone, past=True) == "jwt"
    with pytest.raises(Refused) as caught:
        await open_default.check(gone, query_token=None, authorization=None, past=True)
    assert (caught.value.status, caught.value.reason) == (401, "token_missing")
    allowed = await open_default.check(
        gone, query_token=signed(NS_KEY, "gone"), authorization=None, past=True
    )
    assert allowed.protected


async def test_a_missing_key_is_looked_up_once_per_interval() -> None:
    calls = []

    class Counting:
        async def get(self, namespace: str, ref: Any) -> str:
            calls.append((namespace, ref.name))
            return await SECRETS.get(namespace, ref)

    gate = PlaybackAccess(HttpSettings(), specs=Specs(), secrets=Counting(), clock=lambda: NOW)
    for _ in range(50):
        with pytest.raises(Refused):
            await gate.check(
                StreamKey("site-b", "nokey"),
                query_token=signed(NS_KEY, "nokey", namespace="site-b"),
                authorization=None,
            )
        await gate.check(
            StreamKey("site-a", "door"), query_token=signed(NS_KEY, "door"), authorization=None
        )
    assert sorted(set(calls)) == [
        ("site-a", "camstream-playback"),
        ("site-b", "camstream-playback"),
    ]
    assert len(calls) == 2


def test_admin_token() -> None:
    assert admin_allowed(None, None)
    token = "a" * 24
    assert admin_allowed(token, f"Bearer {token}")
    assert admin_allowed(token, f"bearer {token}")
    assert not admin_allowed(token, None)
    assert not admin_allowed(token, f"Bearer {token}x")
    assert not admin_allowed(token, f"Basic {token}")


def test_cors_star_covers_public_resources_only() -> None:
    default = CorsPolicy(["*"])
    assert default.allowed_origin("https://a.example", protected=False) == "*"
    assert default.allowed_origin("https://a.example", protected=True) is None
    assert "Access-Control-Allow-Origin" not in default.headers("https://a.example", protected=True)
    listed = CorsPolicy(["https://app.example"])
    assert listed.allowed_origin("https://app.example", protected=True) == "https://app.example"
    assert listed.headers("https://app.example", protected=True)["Vary"] == "Origin"
    assert listed.allowed_origin("https://evil.example", protected=False) is None
    assert listed.allowed_origin(None, protected=False) is None
    assert listed.preflight("https://app.example")["Access-Control-Allow-Origin"] == (
        "https://app.example"
    )
    assert (
        "Authorization" in listed.preflight("https://app.example")["Access-Control-Allow-Headers"]
    )
    assert listed.preflight("https://evil.example") == {}


def parse(*argv: str, environ: dict[str, str] | None = None) -> HttpSettings:
    parser = argparse.ArgumentParser()
    http_settings.add_arguments(parser)
    return http_settings.from_args(parser.parse_args(list(argv)), environ=environ or {})


def test_settings_defaults_and_errors_that_name_their_flag(tmp_path) -> None:
    default = parse()
    assert (default.default_mode, default.cors_origins, default.admin_port) == (
        "none",
        ("*",),
        None,
    )
    assert default.limits.idle_timeout == http_settings.IDLE_TIMEOUT
    assert parse(environ={"CAMSTREAM_PLAYBACK_AUTH": "signed"}).default_mode == "signed"
    short = tmp_path / "token"
    short.write_text("tiny-secret\n")
    bad = [
        (("--cors-origin", "https://app.example/path"), "--cors-origin"),
        (("--playback-auth", "jwt"), "--playback-auth"),  # no keys for it
        (("--jwt-keys-file", str(tmp_path / "none.json")), "--jwt-keys-file"),
        (("--jwt-jwks-url", "ftp://idp/keys"), "--jwt-jwks-url"),
        (("--jwt-jwks-url", "https://idp/k", "--jwt-algorithms", "HS256"), "--jwt-algorithms"),
        (("--admin-token-file", str(short)), "--admin-token-file"),
        (("--http-idle-timeout", "0"), "--http-idle-timeout"),
        (("--http-max-connections", "0"), "--http-max-connections"),
    ]
    for argv, flag in bad:
        with pytest.raises(SettingError) as caught:
            parse(*argv)
        assert caught.value.name == flag
    with pytest.raises(SettingError) as caught:
        parse("--admin-token-file", str(short))
    assert "tiny-secret" not in str(caught.value)
    good = tmp_path / "good"
    good.write_text("g" * 32)
    assert parse("--admin-token-file", str(good)).admin_token == "g" * 32
    assert "g" * 32 not in repr(parse("--admin-token-file", str(good)))
