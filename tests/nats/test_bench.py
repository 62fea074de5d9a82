"""The NATS benchmark mode runs and reports both contestants (it asserts no timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.subprocess
def test_nats_bench_quick_run_reports_rates_and_ratios() -> None:
    """``python -m benchmarks.nats_bench --quick`` measures plain nats-py, asyncmp.nats's
    serve and serve_service, and nats.micro, and prints their req/s and ratios as JSON."""
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.nats_bench", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for c in (1, 64):
        plain = result[f"plain_req_s_{c}"]
        assert plain > 0
        for name, ratio_key in (
            ("asyncmp", "ratio"),
            ("service", "service_ratio"),
            ("micro", "micro_ratio"),
        ):
            assert result[f"{name}_req_s_{c}"] > 0
            assert result[f"{ratio_key}_{c}"] == pytest.approx(result[f"{name}_req_s_{c}"] / plain)
