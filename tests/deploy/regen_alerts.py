"""Regenerate monitoring/alerts.yaml from the chart's PrometheusRule template.

Who runs this: a developer after editing helm/camstream/templates/prometheusrule.yaml
(test_chart.py fails until the two agree):

    .venv/bin/python -m tests.deploy.regen_alerts

The file is the rule groups of the PrometheusRule rendered with the default
values for release "camstream" in namespace "camstream", as a plain Prometheus
rule file for clusters without the Prometheus operator.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
TARGET = REPO / "monitoring" / "alerts.yaml"
HEADER = (
    "# Prometheus alerting rules for camstream (plain rule file: `rule_files:` in\n"
    "# prometheus.yml). Generated from helm/camstream/templates/prometheusrule.yaml\n"
    '# for release "camstream" in namespace "camstream" with the default thresholds;\n'
    "# regenerate with `.venv/bin/python -m tests.deploy.regen_alerts`. Metrics and\n"
    "# alerts are described in docs/metrics.md.\n"
)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # Multi-line PromQL as literal blocks, as a person would write it.
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render_groups(helm: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            helm,
            "template",
            "camstream",
            str(REPO / "helm" / "camstream"),
            "--namespace",
            "camstream",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--show-only",
            "templates/prometheusrule.yaml",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return list(yaml.safe_load(out)["spec"]["groups"])


def main() -> int:
    helm = sys.argv[1] if len(sys.argv) > 1 else str(Path.home() / ".cache/camstream/bin/helm")
    body = yaml.dump({"groups": render_groups(helm)}, Dumper=_Dumper, sort_keys=False, width=100)
    TARGET.write_text(HEADER + body)
    print(f"wrote {TARGET.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
