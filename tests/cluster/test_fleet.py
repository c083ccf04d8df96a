"""The fleet benchmark's small configuration, with issue #10's goals as assertions.

The same harness as bench/fleet_bench.py (bench/fleet/scenario.py) on a
control plane of its own (etcd + kube-apiserver with an audit log, no
controllers: the worker pods are fakes), at N = 300 streams, W = 20 workers,
P = 256: the CRD and the chart's RBAC, the real operator process under its
ServiceAccount, 20 fake workers heartbeating, 300 CameraStreams created 64 at
a time, a steady window, then a SIGKILL of the operator and a new one. The
goals (bench/fleet/goals.py, the same the benchmark prints):

- every stream assigned within ASSIGN_BOUND seconds of the last create;
- at most 2 operator writes per stream while they are created (all writes,
  Events and Leases included);
- no operator write to a CameraStream in the steady window;
- none after the SIGKILL, once a new operator leads.

The operator before the fleet rework wrote about 4 times per stream (a label
patch, two status patches, an Event) and failed this test; it now labels at
admission (its webhook) and writes no stream status. ASSIGNED says what
"assigned" means (bench/fleet/predicates.py). About 1 minute; run with -s to
see the figures.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bench.fleet import goals, report, scenario
from bench.fleet.config import FleetConfig, Phases

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

ASSIGNED = "labels"  # partition labels set at admission (the operator's webhook)
ASSIGN_BOUND = 30.0  # seconds from the last create to the last of 300 streams assigned


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
        work_dir=tmp_path / "fleet",  # logs and the audit log stay with the test's temp dir
        bin_dir=control_plane_bin_dir,
        quiet=True,
    )
    result = asyncio.run(scenario.run(config))
    report.print_run(result, sys.stdout)
    missed = [g.line() for g in goals.check(result, assign_bound=ASSIGN_BOUND) if not g.met]
    assert not missed, "fleet goals missed:\n" + "\n".join(missed)
