"""Tests of whole-volume coarse-to-fine inference: fusion, clean-up, stop rule, real tiny RSTNs."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_files import INFERENCE

from atso_med.errors import ConfigError, GridMismatchError, ImageReadError
from atso_med.inferers import (
    CoarseToFineInferer,
    InferenceConfig,
    VolumePrediction,
    estimate_peak_host_bytes,
    fuse_planes,
    keep_large_components,
)
from atso_med.metrics.dice import dice_score
from atso_med.networks import box_from_mask, build_rstn, initialize_rstn

torch.set_num_threads(2)


class FakeRSTN:
    """Deterministic stand-in for an RSTN's two test-time methods.

    ``coarse_probability`` returns ``coarse_scale * image``; ``fine_probability`` returns the image
    inside each sample's box (``box_from_mask`` of the mask plus the margin, as RSTN does),
    optionally times seeded uniform noise that changes at every call, and 0 for an empty mask.
    """

    def __init__(self, coarse_scale: float = 1.0, fine_scale: float = 1.0, noisy: bool = False) -> None:
        self.coarse_scale = coarse_scale
        self.fine_scale = fine_scale
        self.noisy = noisy
        self.coarse_calls = 0
        self.fine_calls = 0
        self.boxes: list[list[int]] = []
        self.fine_inputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def coarse_probability(self, image: torch.Tensor) -> torch.Tensor:
        self.coarse_calls += 1
        return (image * self.coarse_scale).float()

    def fine_probability(self, image, score_map, mask, margin=20):
        assert image.shape == score_map.shape and mask.shape[0] == image.shape[0]
        self.fine_calls += 1
        self.fine_inputs.append((image.clone(), score_map.clone()))
        boxes = box_from_mask(mask, margin)
        self.boxes.extend(boxes.tolist())
        out = torch.zeros_like(image)
        for i, (top, bottom, left, right) in enumerate(boxes.tolist()):
            if bool(mask[i].any()):
                out[i, :, top:bottom, left:right] = image[i, :, top:bottom, left:right]
        if self.noisy:
            gen = torch.Generator().manual_seed(self.fine_calls)
            out = out * torch.rand(out.shape, generator=gen) * 1.25  # mean 0.5 on the organ
        return (out * self.fine_scale).clamp(0, 1)


def ellipsoid(shape, centre, radii) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return (sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1).astype(np.uint8)


SHAPE = (24, 28, 20)
BLOB = ellipsoid(SHAPE, (12, 13, 9), (6, 7, 5))
# Organ 0.8, background 0.2: the identity "network" gives the blob at threshold 0.5.
VOLUME = (0.2 + 0.6 * BLOB).astype(np.float32)


def fakes(planes: str = "XYZ", **kw) -> dict[str, FakeRSTN]:
    return {p: FakeRSTN(**kw) for p in planes}


def tiny_rstn(seed: int = 0, **overrides):
    return initialize_rstn(build_rstn("tiny", **overrides), seed=seed)


# Narrower than the "tiny" preset, for the test that runs the whole pipeline three times.
MICRO = dict(width=0.0625, fc_channels=8)


# -- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(rounds=-1),
        dict(rounds=1.5),
        dict(stop_dsc=0.0),
        dict(stop_dsc=1.1),
        dict(margin=-1),
        dict(threshold=0.0),
        dict(threshold=1.0),
        dict(fusion="vote"),
        dict(batch_size=0),
        dict(batch_size=True),
        dict(amp="yes"),
    ],
)
def test_config_rejects_bad_values(kw):
    with pytest.raises(ConfigError):
        InferenceConfig(**kw)


def test_config_defaults_are_the_reference():
    cfg = InferenceConfig()
    assert (cfg.rounds, cfg.stop_dsc, cfg.margin, cfg.threshold, cfg.fusion) == (10, 0.99, 20, 0.5, "majority")
    assert (cfg.batch_size, cfg.amp, cfg.cleanup, cfg.keep_round_masks) == (None, True, True, False)


def test_the_default_batch_size_is_one_on_the_cpu_and_eight_on_cuda_for_bundle_and_experiment():
    """The experiment used to run 8 stacks per call on the CPU, the bundle 1 (what the memory bound asks)."""
    from atso_med.atso.config import ExperimentConfig

    assert InferenceConfig().batch_size_on("cpu") == 1 and InferenceConfig().batch_size_on("cuda:0") == 8
    assert InferenceConfig(batch_size=4).batch_size_on("cuda:0") == 4
    assert CoarseToFineInferer({"Z": FakeRSTN()}, InferenceConfig(), "cpu").batch_size == 1
    experiment = ExperimentConfig.from_dict({"output_dir": "x", "dataset": "d.json"})
    assert experiment.inference.batch_size is None
    bundle = json.loads(Path(INFERENCE).read_text())
    assert bundle["batch_size"] is None


@pytest.mark.parametrize("models", [{}, {"W": FakeRSTN()}, {"x": FakeRSTN(), "X": FakeRSTN()}, {"X": object()}])
def test_inferer_rejects_bad_models(models):
    with pytest.raises(ConfigError):
        CoarseToFineInferer(models)


def test_inferer_rejects_bad_volumes():
    inferer = CoarseToFineInferer(fakes("Z"), InferenceConfig(rounds=0))
    with pytest.raises(ImageReadError):
        inferer(VOLUME[0])
    with pytest.raises(ImageReadError):
        inferer(VOLUME * 300)  # not windowed
    with pytest.raises(GridMismatchError):
        inferer(VOLUME, truth=BLOB[:-1])


# -- fusion and clean-up ---------------------------------------------------------------------------


def test_fuse_planes_three_planes():
    # Voxels: (0.6, 0.6, 0.0) two votes, mean 0.4; (1.0, 0.45, 0.45) one vote, mean 0.63;
    # (1.0, 0.0, 0.4) one vote, mean 0.47; (0.5, 0.5, 0.5) three votes at the threshold.
    planes = ([0.6, 1.0, 1.0, 0.5], [0.6, 0.45, 0.0, 0.5], [0.0, 0.45, 0.4, 0.5])
    probs = [np.array(v, np.float32).reshape(1, 2, 2) for v in planes]
    majority = fuse_planes(probs, "majority", 0.5)
    mean = fuse_planes(probs, "mean", 0.5)
    assert majority.dtype == np.uint8 and majority.shape == (1, 2, 2)
    assert majority.ravel().tolist() == [1, 0, 0, 1]
    assert mean.ravel().tolist() == [0, 1, 0, 1]
    # The inputs are not modified.
    assert probs[0].ravel().tolist() == pytest.approx([0.6, 1.0, 1.0, 0.5])


def test_fuse_planes_two_and_one_planes():
    a = np.array([0.9, 0.9, 0.2], np.float32).reshape(1, 1, 3)
    b = np.array([0.9, 0.1, 0.2], np.float32).reshape(1, 1, 3)
    assert fuse_planes([a, b], "majority").ravel().tolist() == [1, 0, 0]  # both must agree
    assert fuse_planes([a, b], "mean").ravel().tolist() == [1, 1, 0]  # mean 0.5 >= 0.5
    assert fuse_planes([b], "majority").ravel().tolist() == fuse_planes([b], "mean").ravel().tolist() == [1, 0, 0]
    assert fuse_planes([a], "mean", threshold=0.95).ravel().tolist() == [0, 0, 0]


def test_fuse_planes_errors():
    with pytest.raises(ConfigError):
        fuse_planes([], "mean")
    with pytest.raises(ConfigError):
        fuse_planes([np.zeros((1, 1, 1))], "median")
    with pytest.raises(GridMismatchError):
        fuse_planes([np.zeros((1, 1, 2)), np.zeros((1, 2, 1))])


def test_keep_large_components_by_size():
    mask = np.zeros((12, 12, 12), np.uint8)
    mask[0:2, 0:2, 0:2] = 1  # 8 voxels: the largest
    mask[5:6, 5:7, 5:7] = 1  # 4 voxels: exactly half, kept
    mask[9, 9, 0:3] = 1  # 3 voxels: removed
    mask[2, 2, 2] = 1  # touches the largest by a corner only: its own 1-voxel component, removed
    mask[0, 0, 2] = 1  # shares a face with the largest: part of it (9 voxels now)
    out = keep_large_components(mask)
    assert out.dtype == np.uint8 and out.shape == mask.shape
    expected = np.zeros_like(mask)
    expected[0:2, 0:2, 0:2] = 1
    expected[0, 0, 2] = 1
    expected[5:6, 5:7, 5:7] = 0  # 4 < 9 / 2 once the face neighbour joined the largest
    assert np.array_equal(out, expected)
    mask[0, 0, 2] = 0  # largest back to 8: the 4-voxel piece is kept again
    expected[0, 0, 2] = 0
    expected[5:6, 5:7, 5:7] = 1
    assert np.array_equal(keep_large_components(mask), expected)


def test_keep_large_components_skip_rules():
    empty = np.zeros((4, 5, 6), np.uint8)
    assert not keep_large_components(empty).any()
    # Exactly half of the volume: nothing is removed, not even the isolated voxel.
    half = np.zeros((4, 5, 6), bool)
    half[:2] = True
    half[0, 0, :] = False
    half[3, 4, 5] = True
    half[2, 0, :5] = True
    assert 2 * half.sum() == half.size
    assert np.array_equal(keep_large_components(half), half.astype(np.uint8))
    half[2, 0, 0] = False  # now below half: the isolated voxel goes
    out = keep_large_components(half)
    assert out[3, 4, 5] == 0 and out.sum() == half.sum() - 1
    with pytest.raises(GridMismatchError):
        keep_large_components(np.ones((3, 3)))


# -- the inferer with deterministic fakes ------------------------------------------------------------


@pytest.mark.parametrize("planes", ["Z", "XZ", "XYZ"])
@pytest.mark.parametrize("shape", [(13, 9, 7), (11, 1, 6)])
def test_shapes_dtypes_and_coarse_mean(planes, shape):
    rng = np.random.default_rng(len(planes))
    volume = rng.random(shape).astype(np.float64)  # any float dtype is accepted
    pred = CoarseToFineInferer(fakes(planes), InferenceConfig(rounds=0))(volume)
    assert isinstance(pred, VolumePrediction)
    assert pred.mask.shape == pred.probability.shape == shape
    assert pred.mask.dtype == np.uint8 and pred.probability.dtype == np.float32
    # Identity networks: the averaged overlapping stacks and the mean of planes give the volume back.
    np.testing.assert_allclose(pred.probability, volume, atol=1e-6)
    assert np.array_equal(pred.mask, (volume.astype(np.float32) >= 0.5).astype(np.uint8))
    assert pred.stopped_round == 0 and len(pred.rounds) == 1 and pred.round_masks is None


def test_probability_is_the_mean_of_planes_and_fusion_rules_differ():
    # X sees 0.9 * image, Z sees 0.1 * image: mean 0.5 * image.
    models = {"Z": FakeRSTN(coarse_scale=0.1), "X": FakeRSTN(coarse_scale=0.9)}
    volume = np.full((6, 5, 4), 0.75, np.float32)
    volume[0] = 1.0
    mean = CoarseToFineInferer(models, InferenceConfig(rounds=0, fusion="mean", threshold=0.45))(volume)
    np.testing.assert_allclose(mean.probability, 0.5 * volume, atol=1e-6)
    assert mean.mask[0].all() and not mean.mask[1:].any()  # 0.5 >= 0.45 > 0.375
    majority = CoarseToFineInferer(models, InferenceConfig(rounds=0, fusion="majority", threshold=0.45))(volume)
    assert not majority.mask.any()  # 2 planes: Z's 0.1 never votes, so nothing


def test_stops_when_inter_round_dsc_reaches_one():
    models = fakes()
    pred = CoarseToFineInferer(models, InferenceConfig(rounds=10, keep_round_masks=True, batch_size=8))(
        VOLUME, truth=BLOB
    )
    assert pred.stopped_round == 1
    assert [r["round"] for r in pred.rounds] == [0, 1]
    assert pred.rounds[0]["inter_round_dsc"] is None and pred.rounds[1]["inter_round_dsc"] == 1.0
    assert np.array_equal(pred.mask, BLOB)
    assert [r["voxels"] for r in pred.rounds] == [int(BLOB.sum())] * 2
    assert len(pred.round_masks) == 2 and np.array_equal(pred.round_masks[-1], pred.mask)
    # Round 1 probability: the fine output (the image inside the boxes, 0 in skipped stacks).
    assert np.all(pred.probability[BLOB == 1] == pytest.approx(0.8))
    # Only stacks touching the blob were refined, each on its own mask's box plus the margin.
    for plane, model in models.items():
        axis = "XYZ".index(plane)
        others = tuple(a for a in range(3) if a != axis)
        slices = np.flatnonzero(BLOB.any(axis=others))
        expected_stacks = len(range(max(slices[0] - 1, 0), min(slices[-1] + 1, SHAPE[axis] - 1) + 1))
        assert len(model.boxes) == expected_stacks
        assert model.coarse_calls == -(-SHAPE[axis] // 8)  # batches of 8
    assert all(r["seconds"] >= 0 for r in pred.rounds)
    # "Reaches" includes equality: stop_dsc = 1.0 stops at the first unchanged mask.
    assert CoarseToFineInferer(fakes("Z"), InferenceConfig(rounds=5, stop_dsc=1.0))(VOLUME).stopped_round == 1


def test_saliency_source_is_the_previous_fused_score_map():
    # Fused round-0 score map = mean(1.0, 0.5) x image = 0.75 x image, whatever each plane saw.
    models = {"X": FakeRSTN(coarse_scale=1.0, fine_scale=0.9), "Z": FakeRSTN(coarse_scale=0.5, fine_scale=0.9)}
    volume = VOLUME.copy()
    volume[1, 1, 1] = 0.8  # an island the clean-up removes in round 1, so that round 2 runs
    cfg = InferenceConfig(rounds=2, stop_dsc=1.0, fusion="mean", batch_size=32)
    pred = CoarseToFineInferer(models, cfg)(volume)
    assert pred.stopped_round == 2
    for model in models.values():
        assert model.fine_calls == 2  # one batch per round
        (image1, score1), (image2, score2) = model.fine_inputs
        torch.testing.assert_close(score1, 0.75 * image1)
        # Round 2 sees round 1's fused fine probability: 0.9 x image where both planes refined
        # every covering stack, less where skipped stacks counted as 0, 0 outside the boxes.
        assert torch.all(score2 <= 0.9 * image2 + 1e-6)
        torch.testing.assert_close(score2.max(), torch.tensor(0.72))


def test_margin_reaches_the_fine_model():
    models = fakes("Z")
    CoarseToFineInferer(models, InferenceConfig(rounds=1, margin=2))(VOLUME)
    # The central Z stack's mask spans rows 6..18 and columns 6..20 (the blob's radii).
    centre = models["Z"].boxes[len(models["Z"].boxes) // 2]
    assert centre == [6 - 2, 18 + 1 + 2, 6 - 2, 20 + 1 + 2]


def test_rounds_never_exceed_the_limit():
    progress: list[dict] = []
    inferer = CoarseToFineInferer(fakes(noisy=True), InferenceConfig(rounds=3, fusion="mean"), progress=progress.append)
    pred = inferer(VOLUME, truth=BLOB)
    assert pred.stopped_round == 3 and [r["round"] for r in pred.rounds] == [0, 1, 2, 3]
    assert all(r["inter_round_dsc"] < 0.99 for r in pred.rounds[1:])
    assert pred.mask.any()
    assert progress == pred.rounds
    # Per-round DSC against the truth is recorded and is the DSC of that round's mask.
    assert pred.rounds[-1]["dsc"] == dice_score(pred.mask, BLOB)
    assert pred.rounds[0]["dsc"] == 1.0 and all(0 < r["dsc"] < 1 for r in pred.rounds[1:])


def test_no_dsc_without_truth():
    pred = CoarseToFineInferer(fakes("Y"), InferenceConfig(rounds=2))(VOLUME)
    assert all("dsc" not in r for r in pred.rounds)


def test_empty_coarse_mask_gives_empty_output_without_fine_rounds():
    models = fakes(coarse_scale=0.0)
    pred = CoarseToFineInferer(models, InferenceConfig(rounds=10))(VOLUME, truth=BLOB)
    assert pred.stopped_round == 0 and len(pred.rounds) == 1
    assert not pred.mask.any() and pred.rounds[0]["voxels"] == 0 and pred.rounds[0]["dsc"] == 0.0
    assert all(m.fine_calls == 0 for m in models.values())


def test_mask_becoming_empty_stops():
    pred = CoarseToFineInferer(fakes(fine_scale=0.0), InferenceConfig(rounds=10))(VOLUME)
    assert pred.stopped_round == 1 and not pred.mask.any()
    assert pred.rounds[1]["voxels"] == 0 and pred.rounds[1]["inter_round_dsc"] == 0.0


def test_cleanup_removes_a_small_island_in_fine_rounds():
    volume = VOLUME.copy()
    volume[1, 1, 1] = 0.8  # a 1-voxel island far from the blob
    pred = CoarseToFineInferer(fakes(), InferenceConfig(rounds=2))(volume)
    assert pred.rounds[0]["voxels"] == BLOB.sum() + 1  # round 0 is not cleaned
    assert np.array_equal(pred.mask, BLOB)
    kept = CoarseToFineInferer(fakes(), InferenceConfig(rounds=2, cleanup=False))(volume)
    assert kept.mask[1, 1, 1] == 1


def test_host_memory_stays_a_few_volumes():
    shape = (64, 64, 64)
    volume = (0.2 + 0.6 * ellipsoid(shape, (32, 28, 34), (14, 16, 10))).astype(np.float32)
    inferer = CoarseToFineInferer(fakes(), InferenceConfig(rounds=1, batch_size=2))
    tracemalloc.start()
    try:
        pred = inferer(volume)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pred.stopped_round == 1 and pred.mask.any()
    # The estimate counts the input too, which was allocated before tracing started (measured:
    # about 16.6 bytes per voxel). Holding a plane's stacks would add 12 bytes per voxel.
    assert peak <= estimate_peak_host_bytes(shape)
    assert estimate_peak_host_bytes((512, 512, 300)) < 2e9


# -- real tiny RSTNs ----------------------------------------------------------------------------------


def _partial_threshold(inferer: CoarseToFineInferer, volume: np.ndarray) -> float:
    """A threshold at which the random network's fused coarse mask is partial (so fine rounds run)."""
    _, probability = inferer.coarse_round(volume)
    return float(np.quantile(probability, 0.8))


def test_real_tiny_rstn_end_to_end():
    shape = (16, 18, 12)
    volume = np.random.default_rng(0).random(shape, dtype=np.float32)
    truth = ellipsoid(shape, (8, 9, 6), (4, 5, 3))
    models = {p: tiny_rstn(seed=i) for i, p in enumerate("XYZ")}
    models["X"].eval()
    models["Y"].train()
    threshold = _partial_threshold(CoarseToFineInferer(models), volume)
    cfg = InferenceConfig(rounds=1, threshold=threshold, fusion="mean")
    pred = CoarseToFineInferer(models, cfg)(volume, truth=truth)
    assert pred.mask.shape == shape and pred.mask.dtype == np.uint8 and pred.probability.dtype == np.float32
    assert pred.stopped_round == 1 and len(pred.rounds) == 2
    assert 0 < pred.rounds[0]["voxels"] < volume.size
    assert pred.rounds[-1]["voxels"] == int(pred.mask.sum())
    assert np.all((pred.probability >= 0) & (pred.probability <= 1))
    assert "dsc" in pred.rounds[-1]
    assert models["Y"].training and not models["X"].training  # modes restored after the call


def test_batch_size_does_not_change_the_result():
    shape = (10, 12, 8)
    volume = np.random.default_rng(1).random(shape, dtype=np.float32)
    models = {p: tiny_rstn(seed=i, **MICRO) for i, p in enumerate("XZ")}  # Y batches no differently
    threshold = _partial_threshold(CoarseToFineInferer(models, InferenceConfig(batch_size=5)), volume)
    results = [
        CoarseToFineInferer(models, InferenceConfig(rounds=1, threshold=threshold, fusion="mean", batch_size=b))(volume)
        for b in (1, 5)
    ]
    assert results[0].stopped_round == 1 and results[0].rounds[0]["voxels"] > 0  # the fine round ran
    assert [r["voxels"] for r in results[0].rounds] == [r["voxels"] for r in results[1].rounds]
    assert np.array_equal(results[0].mask, results[1].mask)
    np.testing.assert_allclose(results[0].probability, results[1].probability, atol=1e-5)
