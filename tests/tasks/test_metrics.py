"""Metrics against values computed by hand from small confusion matrices."""

import math
import warnings

import numpy as np
import pytest

from isobn.tasks import metrics

# Binary case, labels first then predictions:
#              pred 1   pred 0
#   label 1    TP = 3   FN = 1
#   label 0    FP = 2   TN = 4
LABELS = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
PREDS = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
TP, FN, FP, TN = 3, 1, 2, 4


def test_accuracy():
    assert metrics.accuracy(PREDS, LABELS) == pytest.approx((TP + TN) / 10)  # 0.7
    assert metrics.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == 0.75


def test_binary_f1_of_class_1():
    # F1 = 2 TP / (2 TP + FP + FN) = 6 / 9
    assert metrics.f1(PREDS, LABELS) == pytest.approx(2 * TP / (2 * TP + FP + FN))
    assert metrics.f1(PREDS, LABELS) == pytest.approx(2 / 3)


def test_macro_f1_averages_both_classes():
    f1_pos = 2 * TP / (2 * TP + FP + FN)  # 6/9
    f1_neg = 2 * TN / (2 * TN + FN + FP)  # 8/11
    assert metrics.macro_f1(PREDS, LABELS) == pytest.approx((f1_pos + f1_neg) / 2)


def test_binary_mcc():
    # (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (12 - 2) / sqrt(5*4*6*5)
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    assert expected == pytest.approx(10 / math.sqrt(600))
    assert metrics.matthews_corrcoef(PREDS, LABELS) == pytest.approx(expected)


def test_multiclass_mcc():
    # c = 4 correct of s = 6; true counts t = (2, 2, 2); predicted counts p = (2, 3, 1)
    # MCC = (c s - p.t) / sqrt((s^2 - p.p)(s^2 - t.t)) = (24 - 12) / sqrt(22 * 24)
    labels = [0, 0, 1, 1, 2, 2]
    preds = [0, 1, 1, 1, 2, 0]
    assert metrics.matthews_corrcoef(preds, labels) == pytest.approx(12 / math.sqrt(22 * 24))


def test_mcc_is_zero_for_constant_predictions():
    assert metrics.matthews_corrcoef([1, 1, 1, 1], [0, 1, 0, 1]) == 0.0


def test_f1_without_predicted_positives_is_zero():
    assert metrics.f1([0, 0, 0], [1, 0, 1]) == 0.0


def test_pearson_and_spearman_by_hand():
    # x = (1,2,3), y = (1,2,4): dx = (-1,0,1), dy = (-4/3,-1/3,5/3)
    # r = sum(dx dy) / sqrt(sum dx^2 sum dy^2) = 3 / sqrt(2 * 42/9) = 9 / sqrt(84)
    assert metrics.pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(9 / math.sqrt(84))
    assert metrics.spearman([1, 2, 3], [1, 2, 4]) == pytest.approx(1.0)
    # ranks (1,2,3,4) vs (1,3,2,4): rho = 1 - 6 sum d^2 / (n (n^2 - 1)) = 1 - 12/60
    assert metrics.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert metrics.pearson([3, 2, 1], [1, 2, 3]) == pytest.approx(-1.0)


def test_correlations_are_undefined_for_constant_labels_and_zero_for_constant_predictions():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning / RuntimeWarning either
        assert metrics.pearson([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0
        assert metrics.spearman([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0
        assert math.isnan(metrics.pearson([1.0, 2.0], [4.0, 4.0]))
        assert math.isnan(metrics.spearman([1.0, 2.0], [4.0, 4.0]))
        assert math.isnan(metrics.pearson([3.0, 3.0], [4.0, 4.0]))  # the data's first
        assert math.isnan(metrics.pearson([1.0], [2.0]))
        scored = metrics.regression_metrics([1.0, 2.0], [4.0, 4.0])
        assert all(math.isnan(v) for v in scored.values()), scored
        assert math.isnan(metrics.glue_metrics("stsb", [1.0, 2.0], [4.0, 4.0])["pearson_spearman"])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        metrics.accuracy([0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="zero examples"):
        metrics.accuracy([], [])


def test_glue_metric_mapping():
    assert metrics.glue_metrics("cola", PREDS, LABELS) == pytest.approx(
        {"mcc": 10 / math.sqrt(600)}
    )
    for name in ("sst2", "qnli", "rte", "wnli"):
        assert metrics.glue_metrics(name, PREDS, LABELS) == pytest.approx({"accuracy": 0.7})
    for name in ("mrpc", "qqp"):
        assert metrics.glue_metrics(name, PREDS, LABELS) == pytest.approx(
            {"f1": 2 / 3, "accuracy": 0.7, "f1_accuracy": (2 / 3 + 0.7) / 2}
        )
    stsb = metrics.glue_metrics("stsb", [1, 2, 3], [1, 2, 4])
    assert stsb == pytest.approx(
        {"pearson": 9 / math.sqrt(84), "spearman": 1.0, "pearson_spearman": (9 / 84**0.5 + 1) / 2}
    )
    for name, main in metrics.GLUE_MAIN_METRIC.items():
        if name != "mnli":
            assert main in metrics.glue_metrics(name, [0, 1, 1], [0, 1, 0])


def test_glue_mnli_matched_and_mismatched():
    preds = {"matched": [0, 1, 2, 2], "dev_mismatched": [0, 0]}
    labels = {"matched": [0, 1, 2, 0], "dev_mismatched": [0, 1]}
    assert metrics.glue_metrics("mnli", preds, labels) == pytest.approx(
        {"matched_accuracy": 0.75, "mismatched_accuracy": 0.5, "accuracy_mean": 0.625}
    )
    assert metrics.glue_metrics("mnli", [0, 1], [0, 0]) == {"accuracy": 0.5, "accuracy_mean": 0.5}


def test_glue_errors():
    with pytest.raises(ValueError, match="unknown GLUE task"):
        metrics.glue_metrics("sst5", [0], [0])
    with pytest.raises(ValueError, match="only meaningful for mnli"):
        metrics.glue_metrics("sst2", {"dev": [0]}, {"dev": [0]})
    with pytest.raises(ValueError, match="splits"):
        metrics.glue_metrics("mnli", {"matched": [0]}, {"mismatched": [0]})


def test_classification_and_regression_bundles():
    out = metrics.classification_metrics(PREDS, LABELS, positive_f1=True)
    assert set(out) == {"accuracy", "macro_f1", "f1"}
    assert set(metrics.classification_metrics(PREDS, LABELS)) == {"accuracy", "macro_f1"}
    reg = metrics.regression_metrics([1, 2, 3], [1, 2, 4])
    assert reg["pearson_spearman"] == pytest.approx((reg["pearson"] + reg["spearman"]) / 2)
    assert all(isinstance(v, float) for v in {**out, **reg}.values())
