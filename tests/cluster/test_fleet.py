"""The fleet benchmark's small configuration, with issue #10's goals as assertions.

The same harness as bench/fleet_bench.py (bench/fleet/scenario.py) on a
control plane of its own (etcd + kube-apiserver with an audit log, no
controllers: the worker pods are fakes), at N = 300 streams, W = 20 workers,
P = 256: the CRD and the chart's RBAC, the real operator process under its
ServiceAccount, 20 fake workers heartbeating, 300 CameraStreams created 64 at
a time. Goals (issue #10):

- every stream assigned within ASSIGN_BOUND seconds of the first create;
- at most 2 operator writes per stream while they are created (all writes,
  Events and Leases included);
- no operator write to a CameraStream in a steady window;
- none after the operator is SIGKILLed and a new one takes over.

The operator of 2026-12 writes about 4 times per stream (a label patch, two
status patches, an Event): this test fails on it, on purpose, until the
operator of the issue's direction lands with it. ASSIGNED says what
"assigned" means (bench/fleet/predicates.py); flip it to "labels" with that
operator. Run with -s to see the figures.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bench.fleet import report, scenario
from bench.fleet.config import FleetConfig, Phases

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

ASSIGNED = "legacy"  # "labels" once partition labels are set at admission
ASSIGN_BOUND = 30.0  # seconds from the first create to the last stream assigned
MAX_WRITES_PER_STREAM = 2.0


def test_fleet_goals(control_plane_bin_dir: Path, tmp_path: Path) -> None:
    config = FleetConfig(
        streams=300,
        workers=20,
        partitions=256,
        assigned=ASSIGNED,
        deadline=60,
        window=15,
        settle_cap=60,
        phases=Phases(restart=True, leader_change=False, growth=False, worker_list=False),
        work_dir=tmp_path / "fleet",  # logs and audit log kept with the test's temp dir
        bin_dir=control_plane_bin_dir,
        quiet=True,
    )
    result = asyncio.run(scenario.run(config))
    report.print_run(result, sys.stdout)
    creation, steady, restart = result["creation"], result["steady"], result["restart"]

    missed = []
    last = creation["first_create_to_last_assigned"]
    if creation["never_assigned"] or last is None or last > ASSIGN_BOUND:
        missed.append(
            f"{creation['assigned']} of 300 assigned, the last after {last} s "
            f"(goal: all within {ASSIGN_BOUND:.0f} s)"
        )
    per_stream = creation["operator_writes_per_stream"]
    if per_stream > MAX_WRITES_PER_STREAM:
        missed.append(
            f"{per_stream:.2f} operator writes per stream during creation "
            f"(goal ≤ {MAX_WRITES_PER_STREAM:.0f}): {creation['operator_requests']}"
        )
    if steady["operator_stream_writes"]:
        missed.append(
            f"{steady['operator_stream_writes']} operator writes to CameraStreams in a "
            f"{steady['seconds']:.0f} s steady window (goal: 0)"
        )
    if restart["leader_after_seconds"] is None:
        missed.append("no operator took the lead after the SIGKILL")
    if restart["operator_stream_writes"]:
        missed.append(
            f"{restart['operator_stream_writes']} operator writes to CameraStreams after a "
            f"restart (goal: 0)"
        )
    assert not missed, "fleet goals missed:\n- " + "\n- ".join(missed)
