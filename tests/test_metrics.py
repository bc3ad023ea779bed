"""Tests of atso_med.metrics.dice: per-case DSC, summary, pooled DSC, streaming accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atso_med.errors import ConfigError, DatasetError, GridMismatchError
from atso_med.metrics import DiceAccumulator, dice_score, dice_summary, global_dice


def _mask(shape, on):
    """A boolean-ish uint8 mask of ``shape`` with the flat positions ``on`` set."""
    m = np.zeros(int(np.prod(shape)), dtype=np.uint8)
    m[list(on)] = 1
    return m.reshape(shape)


def test_dice_hand_counts():
    # |P| = 4, |G| = 5, |P & G| = 3 -> 2 * 3 / 9.
    pred = _mask((3, 4, 2), [0, 1, 2, 3])
    truth = _mask((3, 4, 2), [1, 2, 3, 10, 20])
    assert dice_score(pred, truth) == pytest.approx(6 / 9, abs=1e-12)
    assert dice_score(truth, pred) == pytest.approx(6 / 9, abs=1e-12)
    # Any non-zero value is organ (labels 2, -1, probabilities), bool and float inputs alike.
    assert dice_score(pred * 7, (truth > 0).astype(np.float32) * 0.3) == pytest.approx(6 / 9)
    assert dice_score(pred.astype(bool), truth.astype(np.int64) * -1) == pytest.approx(6 / 9)
    assert dice_score(pred, pred) == 1.0
    assert dice_score(pred, 1 - pred) == 0.0
    assert isinstance(dice_score(pred, truth), float)


def test_dice_tensors_and_mixed():
    pred = _mask((2, 3, 4), [0, 5, 6, 7])
    truth = _mask((2, 3, 4), [5, 6, 7, 8, 9, 10])
    expected = 2 * 3 / (4 + 6)
    assert dice_score(torch.as_tensor(pred), torch.as_tensor(truth)) == pytest.approx(expected)
    assert dice_score(torch.as_tensor(pred).bool(), truth) == pytest.approx(expected)
    assert dice_score(pred[None], torch.as_tensor(truth)[None].float()) == pytest.approx(expected)


def test_dice_empty_cases():
    empty = np.zeros((2, 2, 2))
    full = np.ones((2, 2, 2))
    assert dice_score(empty, empty) == 1.0
    assert dice_score(empty, full) == 0.0
    assert dice_score(full, empty) == 0.0
    assert dice_score(torch.zeros(3), torch.zeros(3)) == 1.0


def test_dice_shape_mismatch():
    with pytest.raises(GridMismatchError):
        dice_score(np.zeros((2, 3, 4)), np.zeros((2, 4, 3)))
    with pytest.raises(GridMismatchError):
        dice_score(np.zeros((1, 2, 3, 4)), torch.zeros(2, 3, 4))
    with pytest.raises(GridMismatchError):
        global_dice([(np.ones((2, 2)), np.ones((2, 2))), (np.ones(3), np.ones(4))])
    with pytest.raises(GridMismatchError):
        DiceAccumulator().add("a", np.zeros((2, 2)), np.zeros((2, 3)))


def test_dice_summary():
    s = dice_summary({"a": 0.8, "b": 0.6, "c": 0.7, "d": 0.9})
    assert s["n"] == 4
    assert s["mean"] == pytest.approx(0.75)
    # Population std (ddof=0): sqrt(mean of squared deviations) = sqrt(0.0125).
    assert s["std"] == pytest.approx(math.sqrt((0.05**2 + 0.15**2 + 0.05**2 + 0.15**2) / 4))
    assert s["min"] == pytest.approx(0.6) and s["max"] == pytest.approx(0.9)
    one = dice_summary([0.5])
    assert one == {"mean": 0.5, "std": 0.0, "n": 1, "min": 0.5, "max": 0.5}
    with pytest.raises(ConfigError):
        dice_summary({})
    with pytest.raises(ConfigError):
        dice_summary({"a": float("nan")})


def _two_cases():
    # Case 1: big organ, |P| = 10, |G| = 10, |P & G| = 9 -> DSC 0.9.
    p1 = _mask((4, 5), range(10))
    g1 = _mask((4, 5), range(1, 11))
    # Case 2: small organ, other shape, |P| = 1, |G| = 3, |P & G| = 0 -> DSC 0.
    p2 = _mask((2, 3, 2), [0])
    g2 = _mask((2, 3, 2), [5, 6, 7])
    return (p1, g1), (p2, g2)


def test_global_dice_differs_from_mean():
    (p1, g1), (p2, g2) = _two_cases()
    pooled = global_dice([(p1, g1), (p2, g2)])
    # Pooled: 2 * (9 + 0) / (10 + 10 + 1 + 3) = 18 / 24.
    assert pooled == pytest.approx(0.75, abs=1e-12)
    per_case_mean = (dice_score(p1, g1) + dice_score(p2, g2)) / 2
    assert per_case_mean == pytest.approx(0.45)
    assert abs(pooled - per_case_mean) > 0.2
    # Streams from a generator, tensors included.
    gen = ((torch.as_tensor(p), g) for p, g in [(p1, g1), (p2, g2)])
    assert global_dice(gen) == pytest.approx(0.75)
    assert global_dice([(np.zeros(3), np.zeros(3))]) == 1.0
    with pytest.raises(ConfigError):
        global_dice([])


def test_dice_accumulator():
    (p1, g1), (p2, g2) = _two_cases()
    acc = DiceAccumulator()
    with pytest.raises(ConfigError):
        acc.summary()
    with pytest.raises(ConfigError):
        acc.global_dice()
    assert acc.add("case1", p1, g1) == pytest.approx(0.9)
    assert acc.add(2, torch.as_tensor(p2), torch.as_tensor(g2)) == 0.0
    assert len(acc) == 2
    assert acc.per_case == pytest.approx({"case1": 0.9, "2": 0.0})
    assert list(acc.per_case) == ["case1", "2"]
    acc.per_case["case1"] = 0.0  # a copy: the accumulator is unaffected
    assert acc.per_case["case1"] == pytest.approx(0.9)
    s = acc.summary()
    assert s["n"] == 2 and s["mean"] == pytest.approx(0.45) and s["std"] == pytest.approx(0.45)
    assert acc.global_dice() == pytest.approx(global_dice([(p1, g1), (p2, g2)]))
    with pytest.raises(DatasetError):
        acc.add("case1", p1, g1)
    assert len(acc) == 2 and acc.global_dice() == pytest.approx(0.75)


def test_the_engines_global_dice_pools_voxels_over_samples_and_averages_the_classes():
    from atso_med.metrics import GlobalDiceMetric

    one = GlobalDiceMetric()
    prediction = torch.zeros(2, 3, 4, 4)
    truth = torch.zeros(2, 3, 4, 4)
    truth[0, :, :2, :2], prediction[0, :, :2, :2] = 1, 0.9  # 12 voxels, all found
    truth[1, 0, 0, :] = 1  # 4 voxels, missed
    one(prediction, truth)
    assert float(one.aggregate()) == pytest.approx(2 * 12 / (12 + 16))  # pooled, not the mean of 1.0 and 0.0

    two = GlobalDiceMetric(num_classes=2)
    prediction = torch.zeros(1, 6, 8, 8)
    truth = torch.zeros(1, 6, 8, 8)
    truth[0, 0:3, :6, :6], prediction[0, 0:3, :6, :6] = 1, 0.8  # class 1 (the liver): 108 voxels, all found
    truth[0, 3:6, 7, :2] = 1  # class 2: 6 voxels
    prediction[0, 3:6, 7, 0] = 0.8  # half of them found
    two(prediction, truth)
    assert float(two.aggregate()) == pytest.approx((1.0 + 2 * 3 / (3 + 6)) / 2)
    absent = GlobalDiceMetric(num_classes=2)
    truth[0, 3:6] = 0  # class 2 absent from the truth: not averaged in (MONAI's ignore_empty)
    absent(prediction, truth)
    assert float(absent.aggregate()) == pytest.approx(1.0)
