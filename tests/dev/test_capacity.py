"""The capacity plan: Kubernetes' HPA algorithm over the HPA the operator renders, the operator's
steps to and from zero, and a day of traffic through them."""

from __future__ import annotations

import json

import pytest
from ocrfleet_dev import capacity
from ocrfleet_dev.cli import main
from ocrfleet_operator import builders


def hpa(workers: dict) -> capacity.Hpa:
    return capacity.Hpa(builders.worker_hpa(capacity.pool({"workers": workers}))["spec"])


def test_scale_up_is_limited_per_period_by_the_rendered_policies():
    h = hpa({"minReplicas": 1, "maxReplicas": 40, "targetQueueDepthPerWorker": 10,
             "scaleUpStabilizationSeconds": 0})
    # 1000 documents want 100 workers; per 15 s at most +100 % or +4 pods, whichever is more
    assert h.desired(0, 1, 1000) == 5
    assert h.desired(15, 5, 1000) == 10
    assert h.desired(30, 10, 1000) == 20
    assert h.desired(45, 20, 1000) == 40, "then the maximum"
    assert h.desired(60, 40, 1000) == 40


def test_a_change_within_the_tolerance_is_no_change():
    h = hpa({"minReplicas": 1, "maxReplicas": 40, "targetQueueDepthPerWorker": 10})
    assert h.desired(0, 10, 105) == 10
    assert h.desired(15, 10, 111) == 12


def test_scale_down_waits_out_its_stabilization_window_then_halves_per_30_s():
    h = hpa({"minReplicas": 1, "maxReplicas": 40, "targetQueueDepthPerWorker": 10,
             "scaleDownStabilizationSeconds": 60, "scaleUpStabilizationSeconds": 0})
    assert h.desired(0, 16, 160) == 16
    assert [h.desired(t, 16, 0) for t in (15, 30, 45)] == [16, 16, 16], "the window remembers 16"
    assert h.desired(75, 16, 0) == 8, "50 % per 30 s"
    assert h.desired(90, 8, 0) == 8
    assert h.desired(105, 8, 0) == 4
    assert h.desired(0 + 300, 4, 0) == 2


def test_the_hpa_leaves_zero_to_the_operator():
    assert hpa({"minReplicas": 0, "maxReplicas": 4}).desired(0, 0, 100) == 0


@pytest.mark.parametrize("minimum, hours", [(0, 0.0), (2, 48.0)])
def test_a_quiet_day_costs_the_minimum(minimum, hours):
    plan = capacity.simulate({"workers": {"minReplicas": minimum, "maxReplicas": 8}}, capacity.Workload(0),
                             pages_per_s=1.0)
    assert plan.worker_hours == pytest.approx(hours)
    assert plan.wait_p95() is None


def test_every_document_is_served_once_when_the_pool_is_big_enough():
    workload = capacity.Workload(100_000, 3.0, pages_per_document=2.0)
    plan = capacity.simulate({"workers": {"minReplicas": 0, "maxReplicas": 20, "targetQueueDepthPerWorker": 8}},
                             workload, pages_per_s=10.0, startup_s=30)
    served = sum(n for h in plan.hours for _, n in h.waits)
    assert served == pytest.approx(300_000 / 2.0, rel=1e-6)
    assert plan.hours[-1].backlog_documents == pytest.approx(0, abs=1e-6)
    assert 5 <= plan.wait_p95() < 120
    assert max(h.max_workers for h in plan.hours) <= 20
    assert capacity.rate_for_peak(workload, 20) == pytest.approx(300_000 * 9 / sum(capacity.LOAN_PLATFORM_HOURS) / 3600 / 20)


def test_an_undersized_pool_runs_at_its_maximum_and_carries_a_backlog():
    plan = capacity.simulate({"workers": {"minReplicas": 1, "maxReplicas": 4}}, capacity.Workload(600_000),
                             pages_per_s=0.37)
    assert max(h.max_workers for h in plan.hours) == 4
    assert plan.hours[-1].backlog_documents > 100_000
    assert plan.wait_p95() > 3600


def test_ocrfleet_plan_prints_and_saves_both_days(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--pages-per-s", "20", "--json", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "600,000 pages a day x 1" in shown and "600,000 pages a day x 3" in shown
    assert "given with --pages-per-s (an assumption" in shown
    saved = json.loads(out.read_text())
    assert set(saved["plans"]) == {"peak_1x", "peak_3x"}
    assert len(saved["plans"]["peak_3x"]["hours"]) == 24
    assert saved["plans"]["peak_3x"]["worker_hours"] > saved["plans"]["peak_1x"]["worker_hours"]
