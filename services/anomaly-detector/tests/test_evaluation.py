"""The detector against the targets on one seeded run of the evaluation (the full table:
`make evaluate-anomalies`, docs/anomaly-detection.md): every injected incident detected within
3 minutes, and no false alarm in the 24-hour normal day of the simulator's daily pattern.
Simulated time: a day of traffic is scored in about a minute on an idle core."""

from __future__ import annotations

from anomaly_detector.evaluation import TARGET_MINUTES, evaluate_seed, targets_met


def test_seeded_run_meets_the_targets() -> None:
    result = evaluate_seed(1, ("seasonal",))["seasonal"]
    assert len(result.incidents) == 4
    late = [
        (r.kind, r.minutes_to_detect)
        for r in result.incidents
        if r.minutes_to_detect is None or r.minutes_to_detect > TARGET_MINUTES
    ]
    assert not late, f"incidents not detected within {TARGET_MINUTES} minutes: {late}"
    assert result.normal_false_alarms == 0, result.false_alarm_examples
    assert targets_met(result)
