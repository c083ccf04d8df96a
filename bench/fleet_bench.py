"""Fleet benchmark (issue #10): the operator against N CameraStreams and W workers.

Who runs it: people weighing a change to the operator at fleet scale, before
and after (not part of `make test`; tests/cluster/test_fleet.py runs a small
configuration with the issue's goals as assertions):

    .venv/bin/python bench/fleet_bench.py --streams 1000 10000 --assigned legacy
    .venv/bin/python bench/fleet_bench.py --streams 100000 --assigned labels --real-worker

For each N, on a fresh etcd + kube-apiserver from tests/cluster with an audit
log: the CRD and the chart's RBAC, the real operator process under its
ServiceAccount, W fake worker pods (Ready, heartbeat Leases renewed by the
bench), then N CameraStreams created 64 at a time. It prints the time until
every stream is assigned (p50/p99/max), the operator's requests by verb and
resource (from the API server's audit log, attributed by user) during
creation, per minute in a steady window, after a SIGKILL and restart, after
a leader change and for a ring growth to 2P; the operator's RSS and CPU; one
worker's LIST + WATCH for its partitions; etcd's size; optionally one real
worker process; then one PASS/FAIL line per goal of the issue
(bench/fleet/goals.py), and exits 1 if one failed. Everything also goes to
artifacts/fleet-bench-<N>.json. bench/fleet/ holds the harness (one module
per job, see its __init__).

"Assigned" is a predicate chosen by --assigned (bench/fleet/predicates.py):
`legacy` for the operator that writes the partition label and status.worker,
`labels` for partition labels set at admission plus a ring that covers them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fleet import goals, predicates, report, scenario  # noqa: E402
from bench.fleet.config import FleetConfig, Phases  # noqa: E402


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--streams",
        type=int,
        nargs="+",
        default=[1000, 10000, 100000],
        help="N values, one fresh cluster each (default 1000 10000 100000)",
    )
    p.add_argument("--workers", type=int, default=200, help="W fake worker pods")
    p.add_argument("--partitions", type=int, default=8192, help="P, the operator's --partitions")
    p.add_argument(
        "--assigned",
        choices=sorted(predicates.PREDICATES),
        default="legacy",
        help="what counts as assigned (see bench/fleet/predicates.py)",
    )
    p.add_argument(
        "--deadline",
        type=float,
        default=600,
        help="seconds after the last create to wait for every stream to be assigned",
    )
    p.add_argument(
        "--window",
        type=float,
        default=60,
        help="steady window, and the shortest window after a restart (seconds)",
    )
    p.add_argument(
        "--settle-cap",
        type=float,
        default=900,
        help="the longest wait for the operator to go quiet after a phase",
    )
    p.add_argument("--in-flight", type=int, default=64, help="concurrent creates")
    p.add_argument("--namespaces", type=int, default=10, help="stream namespaces")
    p.add_argument(
        "--heartbeat-seconds",
        type=float,
        default=None,
        help="fake workers' Lease renewal period (default: the worker CLI's)",
    )
    p.add_argument(
        "--audit-mode",
        choices=("batch", "blocking", "none"),
        default="batch",
        help="kube-apiserver audit log mode; none: no request counts",
    )
    p.add_argument(
        "--operator-arg",
        action="append",
        default=[],
        help="extra argument for `camstream operator` (repeatable); "
        "{free_port} in it becomes a free port per replica",
    )
    p.add_argument(
        "--no-webhook",
        action="store_true",
        help="no admission webhook: the operator's fallback labeller labels all",
    )
    p.add_argument(
        "--no-operator",
        action="store_true",
        help="only create the streams (measures the API server alone)",
    )
    p.add_argument("--skip-restart", action="store_true")
    p.add_argument("--skip-leader-change", action="store_true")
    p.add_argument("--skip-growth", action="store_true")
    p.add_argument("--skip-worker-list", action="store_true")
    p.add_argument(
        "--real-worker",
        action="store_true",
        help="also run one real `camstream worker` for a fake pod",
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="keep state and logs here (default: a temp dir, removed)",
    )
    p.add_argument("--json-dir", type=Path, default=ROOT / "artifacts")
    return p.parse_args(argv)  # fmt: skip


def config(args: argparse.Namespace, streams: int) -> FleetConfig:
    return FleetConfig(
        streams=streams,
        workers=args.workers,
        partitions=args.partitions,
        assigned=args.assigned,
        stream_namespaces=args.namespaces,
        in_flight=args.in_flight,
        deadline=args.deadline,
        window=args.window,
        settle_cap=args.settle_cap,
        heartbeat_seconds=args.heartbeat_seconds,
        audit_mode=args.audit_mode,
        operator=not args.no_operator,
        operator_args=tuple(args.operator_arg),
        webhook=not args.no_webhook,
        phases=Phases(
            restart=not args.skip_restart,
            leader_change=not args.skip_leader_change,
            growth=not args.skip_growth,
            worker_list=not args.skip_worker_list,
            real_worker=args.real_worker,
        ),
        work_dir=(args.work_dir / f"n{streams}") if args.work_dir else None,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    args.json_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for n in args.streams:
        result = asyncio.run(scenario.run(config(args, n)))
        result["load_average_end"] = os.getloadavg()
        path = args.json_dir / f"fleet-bench-{n}.json"
        report.print_run(result, sys.stdout)
        if not args.no_operator:
            checked = goals.check(result)
            result["goals"] = [asdict(g) for g in checked]
            for goal in checked:
                print(goal.line())
            failed += sum(not g.met for g in checked)
        path.write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
        print(f"(all figures: {path})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
