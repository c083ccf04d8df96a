"""Served playlists carry the viewer's token (servers/http/playlist_tokens.py).

Properties over generated playlists: every URI that stays below the
playlist gets exactly the token and still resolves to the same file; every
other line, and every URI that leads elsewhere, is left byte for byte.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urljoin, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from camstream_worker.servers.http.playlist_tokens import carry, stays_below, with_query

BASE = "http://worker:8080/streams/ns/cam/index.m3u8"
TOKEN = "v1.ZGVmYXVsdC9jYW0vMTc.abc-_"
files = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,12}\.(ts|m4s|mp4|m3u8|aac)", fullmatch=True)
inside = st.one_of(
    files, st.builds(lambda d, f: f"{d}/{f}", st.sampled_from(["720p", "360p"]), files)
)
outside = st.one_of(
    st.builds(lambda f: "/elsewhere/" + f, files),
    st.builds(lambda f: "../other/" + f, files),
    st.builds(lambda f: "https://cdn.example.com/" + f, files),
    st.builds(lambda f: "//evil.example/" + f, files),
)
tags = st.sampled_from(
    [
        "#EXTM3U",
        "#EXT-X-VERSION:7",
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-MEDIA-SEQUENCE:1234",
        "#EXT-X-DISCONTINUITY",
        "#EXT-X-PROGRAM-DATE-TIME:2026-12-03T10:00:00.000Z",
        "#EXTINF:2.000,",
        "#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720",
        "",
    ]
)


@st.composite
def playlists(draw):  # type: ignore[no-untyped-def]
    lines: list[tuple[str, str | None]] = []  # (line, uri it holds)
    for _ in range(draw(st.integers(min_value=1, max_value=30))):
        kind = draw(st.sampled_from(["tag", "uri", "map", "outside"]))
        if kind == "tag":
            lines.append((draw(tags), None))
        elif kind == "uri":
            uri = draw(inside)
            lines.append((uri, uri))
        elif kind == "map":
            uri = draw(inside)
            lines.append((f'#EXT-X-MAP:URI="{uri}",BYTERANGE="720@0"', uri))
        else:
            uri = draw(outside)
            lines.append((uri, uri))
    ending = draw(st.sampled_from(["\n", "\r\n"]))
    return lines, ending


@given(playlists())
def test_uris_below_the_playlist_carry_the_token_and_nothing_else_changes(drawn):
    lines, ending = drawn
    text = ending.join(line for line, _ in lines) + ending
    out = carry(text, "token", TOKEN).split(ending)
    assert len(out) == len(lines) + 1 and out[-1] == ""
    for (line, uri), new in zip(lines, out, strict=False):
        if uri is None or not stays_below(uri):
            assert new == line
            continue
        if line.startswith("#"):
            new_uri = new.split('URI="', 1)[1].split('"', 1)[0]
            assert new.replace(new_uri, uri) == line  # only the URI changed
        else:
            new_uri = new
        parts = urlsplit(urljoin(BASE, new_uri))
        assert parts.path == urlsplit(urljoin(BASE, uri)).path  # the same file
        assert parse_qs(parts.query) == {"token": [TOKEN]}


@given(st.one_of(inside, outside))
def test_only_relative_descendants_count_as_below(uri):
    below = stays_below(uri)
    resolved = urlsplit(urljoin(BASE, uri))
    same_folder = resolved.netloc == "worker:8080" and resolved.path.startswith("/streams/ns/cam/")
    assert below == same_folder


def test_an_existing_query_and_fragment_are_kept():
    assert with_query("seg1.ts?x=1#t", "token", "a b") == "seg1.ts?x=1&token=a%20b#t"


def test_a_real_fmp4_master_and_media_playlist():
    master = (
        "#EXTM3U\n#EXT-X-VERSION:7\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=2700000,RESOLUTION=1280x720,CODECS="avc1.64001f"\n'
        "720p/index.m3u8\n"
    )
    assert carry(master, "token", "T").splitlines()[-1] == "720p/index.m3u8?token=T"
    media = '#EXTM3U\n#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.000,\nseg00001.m4s\n'
    assert carry(media, "token", "T") == (
        '#EXTM3U\n#EXT-X-MAP:URI="init.mp4?token=T"\n#EXTINF:2.000,\nseg00001.m4s?token=T\n'
    )
