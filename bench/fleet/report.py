"""The figures of one fleet run as a table for people.

Who calls this: bench/fleet_bench.py, after each N (the JSON beside it in
artifacts/ has everything; this prints what the issue asks for). Reads only
the dict scenario.run returns.
"""

from __future__ import annotations

from typing import Any, TextIO

# Phases with operator request counts, as (result key, column title).
PHASES = (
    ("creation", "creation"),
    ("steady", "steady/min"),
    ("restart", "restart"),
    ("leader_change", "leader"),
    ("growth", "growth"),
)
ROWS_SHOWN = 14


def _mb(value: float | None) -> str:
    """Bytes, in the unit that keeps two or three digits."""
    if value is None:
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if value >= size:
            digits = 1 if value < 10 * size else 0
            return f"{value / size:,.{digits}f} {unit}"
    return f"{value:,.0f} B"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def _ms(stats: dict[str, float | None]) -> str:
    return "/".join("-" if stats.get(k) is None else f"{1000 * stats[k]:,.0f}"  # type: ignore[operator]
                    for k in ("p50", "p99", "max")) + " ms"  # fmt: skip


def _lat(stats: dict[str, float | None]) -> str:
    return " / ".join(_s(stats.get(k)) for k in ("p50", "p99", "max"))


def _cell(phase: str, figures: dict[str, Any], value: float) -> str:
    if phase == "steady":
        value = value / max(figures["seconds"] / 60, 1e-9)
        return f"{value:,.1f}"
    return f"{value:,.0f}"


def print_run(result: dict[str, Any], out: TextIO) -> None:
    cfg = result["config"]
    w = out.write
    w(f"\n== fleet: N = {cfg['streams']:,} streams, W = {cfg['workers']} workers, "
      f"P = {cfg['partitions']}, assigned = {cfg['assigned']}, "
      f"audit = {cfg['audit_mode']} ==\n")  # fmt: skip
    setup = result.get("setup") or {}
    w(f"ring served by all workers {_s(setup.get('ring_complete_seconds'))} after the operator "
      f"started; operator idle before the streams: {setup.get('operator_idle_cores', 0):.2f} "
      f"cores, RSS {_mb(setup.get('operator_idle_rss'))}; heartbeats every "
      f"{result.get('heartbeat_seconds')} s\n")  # fmt: skip
    c = result["creation"]
    w(f"creation: {c['created']:,} created in {_s(c['create_seconds'])} ({c['create_rate']:,.0f}/s;"
      f" create p50/p99 {_lat(c['create_latency'])}); retries {c['create_retries'] or 0}, "
      f"failed {c['create_failed'] or 0}\n")  # fmt: skip
    w(f"assigned: {c['assigned']:,} of {cfg['streams']:,} ({c['never_assigned']:,} not by the "
      f"deadline); latency p50 / p99 / max {_lat(c['assign_latency'])}; first create to last "
      f"assigned {_s(c['first_create_to_last_assigned'])}\n")  # fmt: skip
    phases = [(k, t) for k, t in PHASES if k in result]
    _operator_table(result, phases, w)
    _process_table(result, phases, w)
    _others(result, phases, w)
    _probes(result, w)


def _operator_table(result: dict[str, Any], phases: list[tuple[str, str]], w: Any) -> None:
    cfg = result["config"]
    rows: dict[str, None] = {}
    for key, _ in phases:
        for row in result[key]["operator_requests"]:
            rows.setdefault(row)
    ranked = sorted(rows, key=lambda r: -result["creation"]["operator_requests"].get(r, 0))
    w(f"\noperator requests (audit log)  {'per stream':>10}" +
      "".join(f"{title:>12}" for _, title in phases) + "\n")  # fmt: skip
    for row in ranked[:ROWS_SHOWN]:
        per = result["creation"]["operator_requests"].get(row, 0) / cfg["streams"]
        cells = "".join(
            f"{_cell(k, result[k], result[k]['operator_requests'].get(row, 0)):>12}"
            for k, _ in phases
        )
        w(f"  {row:<29}{per:>10.2f}{cells}\n")
    if len(ranked) > ROWS_SHOWN:
        w(f"  ... {len(ranked) - ROWS_SHOWN} more rows in the JSON\n")
    for label, field in (("writes (all)", "operator_writes"),
                         ("writes to CameraStreams", "operator_stream_writes"),
                         ("Events posted", "operator_event_writes")):  # fmt: skip
        per = result["creation"][field] / cfg["streams"]
        cells = "".join(f"{_cell(k, result[k], result[k][field]):>12}" for k, _ in phases)
        w(f"  {label:<29}{per:>10.2f}{cells}\n")
    codes = "; ".join(
        f"{title} " + ", ".join(f"{code}: {n:,}" for code, n in result[k]["operator_codes"].items())
        for k, title in phases
        if result[k]["operator_codes"]
    )
    w(f"  response codes: {codes or '-'}\n")
    served = "; ".join(
        f"{title} {_ms(result[k]['operator_served_seconds'])}" for k, title in phases
    )
    w(f"  time inside the API server p50/p99/max: {served}\n")


def _process_table(result: dict[str, Any], phases: list[tuple[str, str]], w: Any) -> None:
    w(f"\n{'processes':<32}" + "".join(f"{t:>12}" for _, t in phases) + "\n")
    names: dict[str, None] = {}
    for key, _ in phases:
        for name in result[key]["processes"]:
            names.setdefault(name)
    for name in names:
        for label, field, fmt in (("RSS peak", "peak_rss", _mb), ("RSS last", "last_rss", _mb)):
            cells = "".join(
                f"{fmt(result[k]['processes'].get(name, {}).get(field)):>12}" for k, _ in phases
            )
            w(f"  {name + ' ' + label:<30}{cells}\n")
        cells = "".join(
            f"{result[k]['processes'][name]['cores']:>11.2f}c"
            if name in result[k]["processes"]
            else f"{'-':>12}"
            for k, _ in phases
        )
        w(f"  {name + ' CPU':<30}{cells}\n")
    lengths = ", ".join(f"{t} {_s(result[k]['seconds'])}" for k, t in phases)
    w(f"  (window lengths: {lengths})\n")


def _others(result: dict[str, Any], phases: list[tuple[str, str]], w: Any) -> None:
    w("\nwrites by role per phase: " + "; ".join(
        f"{t}: " + ", ".join(f"{role} {n:,}" for role, n in result[k]["writes_by_role"].items())
        for k, t in phases
    ) + "\n")  # fmt: skip
    for key, label in (("restart", "restart"), ("leader_change", "leader change")):
        if key in result:
            r = result[key]
            extra = (f", stand-by caught up in {_s(r['standby_warmup_seconds'])}"
                     if "standby_warmup_seconds" in r else "")  # fmt: skip
            w(f"{label}: new leader after {_s(r['leader_after_seconds'])}{extra}; quiet "
              f"after {_s(r['seconds'])}; {r['assigned_now']:,} streams assigned at the "
              "end\n")  # fmt: skip
    if "growth" in result:
        g = result["growth"]
        w(f"ring growth to {g['partitions']}: ring complete after {_s(g['ring_grown_seconds'])}, "
          f"every stream assigned for it after {_s(g['all_assigned_seconds'])} "
          f"({g['assigned']:,} assigned); {g['operator_writes_per_stream']:.2f} operator "
          f"writes per stream, {g['operator_event_writes']:,} Events\n")  # fmt: skip


def _probes(result: dict[str, Any], w: Any) -> None:
    if "worker_list" in result:
        x = result["worker_list"]
        paged, unpaged = x["all_paged"], x["all_unpaged"]
        if "selector_paged" in x:
            own = x["selector_paged"]
            w(f"one worker's LIST ({x['worker']}, {x['partitions']} partitions, selector "
              f"{x['selector_chars']} chars, pages of 500): {own['items']:,} items (expected "
              f"{x['expected_streams']:,}) in {_s(own['seconds'])}, "
              f"{_mb(own['bytes'])}\n")  # fmt: skip
        w(f"LIST of every stream: pages of 500 {_s(paged['seconds'])} {_mb(paged['bytes'])} "
          f"({paged['pages']} pages); unpaged {_s(unpaged['seconds'])} "
          f"{_mb(unpaged['bytes'])}\n")  # fmt: skip
    watch = (result.get("steady") or {}).get("worker_watch")
    if watch:
        w(f"one worker's WATCH in the steady window: {watch['events']} events, "
          f"{watch['bytes']:,} bytes ({watch['bookmarks']} bookmarks)\n")  # fmt: skip
    for phase in ("creation", "steady"):
        for identity, lag in ((result.get(phase) or {}).get("operator_loop_lag") or {}).items():
            if lag:
                w(f"operator {identity} event loop by the end of {phase}: worst lag "
                  f"{lag.get('max', 0) * 1000:.0f} ms ({lag.get('over_100ms', 0):.0f} of "
                  f"{lag.get('probes', 0):,.0f} 50 ms probes over 100 ms late); worst stall, "
                  f"less the wait for a CPU, {lag.get('stall_max', 0) * 1000:.0f} ms "
                  f"({lag.get('stalls_over_100ms', 0):.0f} over 100 ms)\n")  # fmt: skip
    etcd = result.get("etcd") or {}
    peaks = result.get("processes_peak") or {}
    w(f"etcd database {_mb(etcd.get('db_bytes'))} ({_mb(etcd.get('db_in_use_bytes'))} in use); "
      f"peak RSS kube-apiserver {_mb(peaks.get('kube-apiserver'))}, etcd "
      f"{_mb(peaks.get('etcd'))}\n")  # fmt: skip
    if "real_worker" in result and "skipped" in result["real_worker"]:
        w(f"real worker: skipped, {result['real_worker']['skipped']}\n")
    elif "real_worker" in result:
        r = result["real_worker"]
        w(f"real worker {r['pod']}: /readyz after {_s(r['ready_seconds'])}, "
          f"{r['running_streams']:,} of {r['expected_streams']:,} streams running after "
          f"{_s(r['all_running_seconds'])}; RSS {_mb(r['rss_bytes'])} "
          f"(peak {_mb(r['peak_rss_bytes'])})\n")  # fmt: skip
    a = result.get("audit")
    if a:
        w(f"audit log: {a['lines']:,} lines read, API server counted {a['events']:,.0f} "
          f"events, {a['errors']:,.0f} errors, {a['queue_blocked_lines']:.0f} buffer-full "
          "warnings\n")  # fmt: skip
