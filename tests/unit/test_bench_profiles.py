"""bench/profiles.py: how bench/worker_profile.py charges samples, syscalls and memory.

A sample charged to the wrong stage would put the blame for camstream's cost
in the wrong place (issue 12, part 2), so the stage rules are pinned on stacks
shaped like the real ones (py-spy `-f raw --native` lines, root first).
"""

from __future__ import annotations

import pytest

from bench import profiles

W = "camstream_worker/outputs/hls/writer.py"
RTMP = (
    "_run_once (asyncio/base_events.py:1922);_run (asyncio/events.py:80);"
    "_SelectorSocketTransport._read_ready__data_received (asyncio/selector_events.py:1009);"
    "RtmpConnection.data_received (camstream_worker/servers/rtmp/connection.py:170);"
    "RtmpConnection._decode (camstream_worker/servers/rtmp/connection.py:340)"
)
SINK = (
    ";RtmpConnection._media (camstream_worker/servers/rtmp/connection.py:420)"
    ";_PublishSession.on_packet (camstream_worker/sources/rtmp.py:200)"
    ";Session.packet (camstream_worker/session.py:90)"
    f";HlsWriter.write ({W}:250)"
)


@pytest.mark.parametrize(
    ("stack", "stage"),
    [
        (
            RTMP + SINK + f";HlsWriter._flush ({W}:380);HlsWriter._publish ({W}:428)"
            f";_write_atomically ({W}:448);0x7f00 (libc.so.6)",
            "playlist writes",
        ),
        (
            RTMP + SINK + f";HlsWriter._flush ({W}:362);HlsWriter._mux ({W}:440)"
            ";av_interleaved_write_frame (libavformat-4639def2.so.62.12.102)",
            "PyAV muxing (MPEG-TS, per segment)",
        ),
        (
            RTMP + SINK + f";HlsWriter._flush ({W}:364);_write_atomically ({W}:448)",
            "segment file writes",
        ),
        (RTMP + SINK + f";HlsWriter._join ({W}:330)", "HLS writer per packet (hold the GOP)"),
        (
            RTMP + SINK.rsplit(";", 2)[0] + ";Session.packet (camstream_worker/session.py:90)",
            "outputs and session fan-out",
        ),
        (
            RTMP + ";RtmpConnection._media (camstream_worker/servers/rtmp/connection.py:420)"
            ";_PublishSession.on_packet (camstream_worker/sources/rtmp.py:195)"
            ";0x7f01 (_core.cpython-311-x86_64-linux-gnu.so)",
            "PyAV packet creation",
        ),
        (RTMP + ";FlvParser._video (camstream_worker/protocols/rtmp/flv.py:190)", "FLV parsing"),
        (
            RTMP + ";ChunkDecoder.decode (camstream_worker/protocols/rtmp/chunks.py:300)",
            "RTMP chunk decode and messages",
        ),
        (
            "_run_once (asyncio/base_events.py:1922);"
            "_SelectorSocketTransport._read_ready__data_received (asyncio/selector_events.py:990)"
            ";0x7f02 (libc.so.6)",
            "RTMP read (event loop, socket recv)",
        ),
        (
            "main (camstream_worker/pool/child.py:55);_run_once (asyncio/base_events.py:1884)"
            ";EpollSelector.select (selectors.py:468);select_epoll_poll (selectmodule.c.h:841)",
            "event loop: waiting in epoll",
        ),
        (
            "main (camstream_worker/pool/child.py:55);_run_once (asyncio/base_events.py:1922)"
            ";Handle._run (asyncio/events.py:80)",
            "event loop, other",
        ),
        (
            "main (camstream_worker/pool/child.py:40)"
            ";Requests.read (camstream_worker/pool/ipc.py:90)",
            "IPC with the pool (control pipe, fd passing)",
        ),
        ("gc_collect_main (libpython3.11.so.1.0)", profiles.OTHER),
    ],
)
def test_a_sample_goes_to_its_innermost_stage(stack: str, stage: str) -> None:
    frames, count = profiles.parse_collapsed(f"{stack} 7")
    assert count == 7
    assert profiles.stage_of(frames) == stage


def test_parse_collapsed_splits_function_and_place() -> None:
    frames, count = profiles.parse_collapsed(
        f"<module> (<string>:6);HlsWriter._mux ({W}:436);0x7f2e (libc.so.6) 13\n"
    )
    assert count == 13
    assert frames == [
        profiles.Frame("<module>", "<string>"),
        profiles.Frame("HlsWriter._mux", W),
        profiles.Frame("0x7f2e", "libc.so.6"),
    ]


@pytest.mark.parametrize("line", ["", "no count here", "a (b.py:1) x1"])
def test_parse_collapsed_refuses_other_lines(line: str) -> None:
    with pytest.raises(ValueError, match="collapsed"):
        profiles.parse_collapsed(line)


def test_breakdown_sums_counts_by_stage_and_by_leaf_library() -> None:
    lines = [
        RTMP + ";FlvParser._video (camstream_worker/protocols/rtmp/flv.py:190) 3",
        RTMP + SINK + f";HlsWriter._flush ({W}:362);HlsWriter._mux ({W}:440)"
        ";av_write_frame (libavformat-4639def2.so.62.12.102) 5",
        "",
    ]
    assert profiles.breakdown(lines) == {"FLV parsing": 3, "PyAV muxing (MPEG-TS, per segment)": 5}
    assert profiles.breakdown(lines, key="library") == {"Python code": 3, "libavformat": 5}


def test_perf_stat_csv_counts_and_skips_what_was_not_counted() -> None:
    text = (
        "# started on Thu Dec  3\n\n"
        "2412,,raw_syscalls:sys_enter,10003456,100.00,,\n"
        "1200,,syscalls:sys_enter_read,10003456,100.00,,\n"
        "<not counted>,,syscalls:sys_enter_rename,0,0.00,,\n"
        "31,,camstream_bench:av_malloc,10003456,100.00,,\n"
    )
    assert profiles.parse_perf_stat_csv(text) == {
        "raw_syscalls:sys_enter": 2412,
        "syscalls:sys_enter_read": 1200,
        "camstream_bench:av_malloc": 31,
    }


SMAPS = """\
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
Pss:                 100 kB
Private_Clean:         0 kB
Private_Dirty:       100 kB
VmFlags: rd wr mr mw me ac
7f00a0000000-7f00a0100000 rw-p 00000000 00:00 0
Pss:                  50 kB
Private_Clean:         0 kB
Private_Dirty:        40 kB
7f00b0000000-7f00b0800000 r-xp 00000000 08:01 42 /v/site-packages/av.libs/libavcodec-5e6b81c2.so.62
Pss:                 300 kB
Private_Clean:        10 kB
Private_Dirty:         0 kB
7f00c0000000-7f00c0400000 r-xp 00000000 08:01 43 /py/lib/libpython3.11.so.1.0
Pss:                 200 kB
Private_Clean:         0 kB
Private_Dirty:         8 kB
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
Pss:                  12 kB
Private_Clean:         0 kB
Private_Dirty:        12 kB
"""


def test_smaps_by_kind_adds_pss_and_private_per_kind() -> None:
    assert profiles.smaps_by_kind(SMAPS) == {
        "heap and anonymous (Python objects, buffers)": {"pss_kb": 150, "private_kb": 140},
        "PyAV and its FFmpeg libraries": {"pss_kb": 300, "private_kb": 10},
        "Python interpreter": {"pss_kb": 200, "private_kb": 8},
        "stacks": {"pss_kb": 12, "private_kb": 12},
    }
