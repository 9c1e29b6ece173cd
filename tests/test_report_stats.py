"""The report's statistics and published references, against numbers computed by hand."""

from __future__ import annotations

import math

import pytest

from hdl.report.published import load_published
from hdl.report.stats import paired_t_interval
from hdl.report.tables import difference_text


def test_paired_t_interval_with_two_seeds() -> None:
    # Differences (3, 4): mean 3.5, s = sqrt(0.5), s / sqrt(2) = 0.5. With 1 degree of freedom Student's t
    # is the Cauchy distribution: t(0.975) = tan(0.475 pi) = 12.7062 and p = 1 - (2 / pi) atan(3.5 / 0.5).
    low, high, p_value = paired_t_interval([3.0, 4.0])
    assert (low, high) == pytest.approx((3.5 - 12.7062 * 0.5, 3.5 + 12.7062 * 0.5), abs=1e-4)
    assert (low, high) == pytest.approx((-2.8531, 9.8531), abs=1e-4)
    assert p_value == pytest.approx(1 - 2 / math.pi * math.atan(7.0))
    assert p_value == pytest.approx(0.0903, abs=1e-4)


def test_paired_t_interval_with_three_seeds() -> None:
    # Differences (1, 2, 0): mean 1, s = 1, s / sqrt(3) = 0.57735. With 2 degrees of freedom the t quantile is
    # a (2 / (1 - a^2))^0.5 for a = 2 * 0.975 - 1 = 0.95: 4.3027; p = 1 - t / (2 + t^2)^0.5 at t = 3^0.5.
    low, high, p_value = paired_t_interval([1.0, 2.0, 0.0])
    half_width = 0.95 * math.sqrt(2 / (1 - 0.95**2)) / math.sqrt(3)
    assert half_width == pytest.approx(2.4841, abs=1e-4)
    assert (low, high) == pytest.approx((1 - half_width, 1 + half_width))
    assert p_value == pytest.approx(1 - math.sqrt(3 / 5))
    assert p_value == pytest.approx(0.2254, abs=1e-4)
    assert paired_t_interval([1.0, float("nan"), 2.0, 0.0]) == pytest.approx((low, high, p_value))


def test_paired_t_interval_without_spread() -> None:
    assert all(math.isnan(value) for value in paired_t_interval([2.5]))
    assert all(math.isnan(value) for value in paired_t_interval([]))
    assert paired_t_interval([5.0, 5.0, 5.0]) == (5.0, 5.0, 0.0)
    low, high, p_value = paired_t_interval([0.0, 0.0])
    assert (low, high) == (0.0, 0.0) and math.isnan(p_value)


def test_difference_text_marks_intervals_that_contain_zero() -> None:
    assert difference_text(1.0, -1.4841, 3.4841, 3, 3) == "+1.00 [-1.48, +3.48] n.s."
    assert difference_text(2.0, 0.5, 3.5, 3, 3) == "+2.00 [+0.50, +3.50]"
    assert difference_text(-2.0, -3.0, -1.0, 2, 3) == "-2.00 [-3.00, -1.00] (n=2)"
    assert difference_text(3.0, math.nan, math.nan, 1, 3) == "+3.00 (n=1, no CI)"
    assert difference_text(3.0, math.nan, math.nan, 1, 1) == "+3.00 (n=1, no CI)"
    assert difference_text(math.nan, math.nan, math.nan, 0, 3) is None


def published(dataset: str, labels: int, imbalance: float, method: str):
    table = load_published()
    row = table[(table["dataset"] == dataset) & (table["labels"] == labels)
                & (table["imbalance"] == imbalance) & (table["method"] == method)]
    assert len(row) <= 1
    return None if row.empty else row.iloc[0]


def test_published_accuracies_from_usb() -> None:
    table = load_published()
    # 4 methods x 6 balanced CIFAR cells, and FixMatch and ReMixMatch at CIFAR-10-LT IF 100 and 150.
    assert len(table) == 4 * 6 + 2 * 2
    assert not table.duplicated(["dataset", "labels", "imbalance", "method"]).any()
    assert set(table["method"]) == {"mixmatch", "remixmatch", "fixmatch", "freematch"}
    # classic_cv.csv holds error rates: FixMatch, CIFAR-10, 40 labels: 8.33±1.41.
    fixmatch = published("cifar10", 40, 1.0, "fixmatch")
    assert fixmatch["published_mean"] == pytest.approx(91.67) and fixmatch["published_std"] == pytest.approx(1.41)
    assert fixmatch["published_source"] == "results/classic_cv.csv [fixmatch; cifar10_40]: error 8.33±1.41"
    assert published("cifar100", 400, 1.0, "freematch")["published_mean"] == pytest.approx(100 - 49.24)
    assert published("cifar100", 10000, 1.0, "mixmatch")["published_mean"] == pytest.approx(100 - 32.1)
    # classic_cv_imb.csv holds accuracies: FixMatch, N1=1500, M1=3000, IF=100: 76.69±0.78.
    assert published("cifar10", 1500, 100.0, "fixmatch")["published_mean"] == pytest.approx(76.69)
    assert published("cifar10", 1500, 150.0, "remixmatch")["published_mean"] == pytest.approx(74.64)
    assert published("cifar10", 1500, 100.0, "mixmatch") is None  # USB has no long-tailed MixMatch
    assert published("cifar10", 1500, 50.0, "fixmatch") is None
    assert not (table["dataset"] == "fashion_mnist").any()
    assert table["published_mean"].between(0, 100).all()
