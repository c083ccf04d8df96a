"""The alerting rules, checked and unit-tested by Prometheus's own promtool.

monitoring/alerts.yaml (the chart's PrometheusRule rendered for release
"camstream"; test_chart.py keeps the two equal) must parse as PromQL rules,
and tests/deploy/alerts_test.yaml replays metric series through them: each
alert fires when it should, with the labels and text a person receives, and
stays quiet when it should (paused streams, handoffs, other releases).

promtool is built from its Go module by scripts/install-promtool.sh
(cached); if it is missing, the fixture builds it.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO

HERE = Path(__file__).resolve().parent
ALERTS = REPO / "monitoring" / "alerts.yaml"
UNIT_TESTS = HERE / "alerts_test.yaml"


@pytest.fixture(scope="session")
def promtool() -> Path:
    cache = Path(os.environ.get("CAMSTREAM_CACHE", Path.home() / ".cache" / "camstream"))
    binary = cache / "bin" / "promtool"
    if not binary.exists():
        subprocess.run(
            ["bash", str(HERE.parents[1] / "scripts" / "install-promtool.sh")],
            check=True,
            timeout=2400,
        )
    assert binary.exists(), f"promtool not found at {binary}"
    return binary


def run(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_rules_parse(promtool: Path) -> None:
    result = run(promtool, "check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout + result.stderr


def test_alert_unit_tests_pass(promtool: Path) -> None:
    result = run(promtool, "test", "rules", str(UNIT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_unit_tests_can_fail(promtool: Path, tmp_path: Path) -> None:
    # The same series, but expecting silence where the alert fires: promtool must object.
    broken = (
        UNIT_TESTS.read_text()
        .replace("../../monitoring/alerts.yaml", str(ALERTS))
        .replace(
            """      - eval_time: 8m
        alertname: CameraStreamDown
        exp_alerts:""",
            """      - eval_time: 8m
        alertname: CameraStreamDown
        exp_alerts: []
      - eval_time: 8m
        alertname: CameraStreamDown
        exp_alerts:""",
            1,
        )
    )
    path = tmp_path / "broken_test.yaml"
    path.write_text(broken)
    result = run(promtool, "test", "rules", str(path))
    assert result.returncode != 0
    assert "CameraStreamDown" in result.stdout + result.stderr


def test_dashboard_queries_parse(promtool: Path, tmp_path: Path) -> None:
    """Every panel query of the Grafana dashboard is valid PromQL.

    Grafana's variables are replaced by what Grafana would substitute
    ($__rate_interval by a duration, $job by a regex), and each query becomes
    a recording rule so that `promtool check rules` parses it.
    """
    import json

    import yaml

    dashboard = json.loads(
        (REPO / "helm" / "camstream" / "dashboards" / "camstream-fleet.json").read_text()
    )
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 15
    substitutions = {
        "$__rate_interval": "2m",
        "$operator_job": ".+",
        "$edge_job": ".+",
        "$job": ".+",
    }
    rules = []
    for i, expr in enumerate(exprs):
        for var, value in substitutions.items():
            expr = expr.replace(var, value)
        assert "$" not in expr, f"unknown Grafana variable in {expr}"
        rules.append({"record": f"camstream:dashboard_query_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
