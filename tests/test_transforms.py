"""Tests of atso_med.transforms: HU windowing, 3-slice stacks, their inverse, slice selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from atso_med.errors import ConfigError, DatasetError, GridMismatchError
from atso_med.transforms import (
    PLANES,
    HUWindow,
    HUWindowd,
    SliceStack,
    SliceStackd,
    StackAccumulator,
    iter_stacks,
    plane_axis,
    positive_slice_filter,
    slice_pixel_counts,
    slice_stack,
    stacks_to_volume,
)

SHAPES = [(5, 7, 3), (6, 4, 9), (1, 4, 3), (3, 1, 2), (2, 3, 1)]


def _all_stacks(volume, plane):
    n = volume.shape[-3:][plane_axis(plane)]
    return np.stack([slice_stack(volume, plane, j) for j in range(n)])


# --- HU window -----------------------------------------------------------------------------------


def test_hu_window_values():
    hu = np.array([-1024, -101, -100, -15, 70, 155, 240, 241, 3000], dtype=np.int16)
    out = HUWindow()(hu)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    expected = np.array([0, 0, 0, 0.25, 0.5, 0.75, 1, 1, 1], dtype=np.float32)
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_hu_window_custom_range_and_validation():
    out = HUWindow(a_min=0, a_max=100, b_min=-1, b_max=1)(np.array([-5.0, 0.0, 50.0, 100.0, 120.0]))
    np.testing.assert_allclose(out, [-1, -1, 0, 1, 1], atol=1e-6)
    with pytest.raises(ConfigError):
        HUWindow(a_min=240, a_max=-100)
    with pytest.raises(ConfigError):
        HUWindow(a_min=10, a_max=10)
    with pytest.raises(ConfigError):
        HUWindow(b_min=1, b_max=0)
    with pytest.raises(ConfigError):
        HUWindowd(keys="image", a_min=5, a_max=1)
    assert isinstance(HUWindow(), Transform)


def test_hu_window_keeps_tensor_type():
    hu = torch.tensor([[-300, -100, 70], [240, 500, 155]], dtype=torch.int16)
    out = HUWindow()(hu)
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == hu.shape
    torch.testing.assert_close(out, torch.tensor([[0, 0, 0.5], [1, 1, 0.75]]))
    meta = MetaTensor(hu.float(), affine=torch.diag(torch.tensor([2.0, 3.0, 4.0, 1.0])))
    out_meta = HUWindow()(meta)
    assert isinstance(out_meta, MetaTensor) and out_meta.dtype == torch.float32
    assert float(out_meta.affine[1, 1]) == 3.0


def test_hu_windowd():
    data = {"image": np.array([-200.0, 70.0, 400.0]), "label": np.array([0, 1, 2]), "id": "c1"}
    xform = HUWindowd(keys="image")
    assert isinstance(xform, MapTransform)
    out = xform(data)
    np.testing.assert_allclose(out["image"], [0, 0.5, 1], atol=1e-6)
    assert out["label"] is data["label"] and out["id"] == "c1"
    assert data["image"][0] == -200.0  # input dict untouched


# --- planes and stacks ---------------------------------------------------------------------------


def test_plane_axis():
    assert [plane_axis(p) for p in PLANES] == [0, 1, 2]
    assert plane_axis("z") == 2 and plane_axis("x") == 0
    for bad in ("W", "", "XY", 2, None):
        with pytest.raises(ConfigError):
            plane_axis(bad)
    with pytest.raises(ConfigError):
        slice_stack(np.zeros((2, 2, 2)), "Q", 0)
    with pytest.raises(ConfigError):
        SliceStack("axial")


def test_slice_stack_content_and_edges():
    vol = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    # Plane X -> (J, K), Y -> (I, K), Z -> (I, J).
    s = slice_stack(vol, "X", 2)
    assert s.shape == (3, 5, 6)
    np.testing.assert_array_equal(s, vol[[1, 2, 3]])
    s = slice_stack(vol, "Y", 0)
    assert s.shape == (3, 4, 6)
    np.testing.assert_array_equal(s[0], vol[:, 0, :])  # edge: missing neighbour repeats slice 0
    np.testing.assert_array_equal(s[1], vol[:, 0, :])
    np.testing.assert_array_equal(s[2], vol[:, 1, :])
    s = slice_stack(vol, "Z", 5)
    assert s.shape == (3, 4, 5)
    np.testing.assert_array_equal(s[0], vol[:, :, 4])
    np.testing.assert_array_equal(s[1], vol[:, :, 5])
    np.testing.assert_array_equal(s[2], vol[:, :, 5])
    s = slice_stack(vol, "z", 3)
    np.testing.assert_array_equal(s, np.stack([vol[:, :, 2], vol[:, :, 3], vol[:, :, 4]]))
    assert s.dtype == vol.dtype and s.flags["C_CONTIGUOUS"]
    single = slice_stack(np.arange(6).reshape(2, 1, 3), "Y", 0)  # size-1 axis: 3 copies
    np.testing.assert_array_equal(single, np.tile(np.arange(6).reshape(1, 2, 3), (3, 1, 1)))
    for bad in (-1, 6):
        with pytest.raises(ConfigError):
            slice_stack(vol, "Z", bad)


def test_slice_stack_channel_first_and_tensor():
    vol = np.random.default_rng(0).random((3, 4, 5)).astype(np.float32)
    t = torch.as_tensor(vol)
    for plane in PLANES:
        for j in range(vol.shape[plane_axis(plane)]):
            expected = slice_stack(vol, plane, j)
            np.testing.assert_array_equal(slice_stack(vol[None], plane, j), expected)
            out = slice_stack(t[None], plane, j)
            assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
            np.testing.assert_array_equal(out.numpy(), expected)
    with pytest.raises(GridMismatchError):
        slice_stack(np.zeros((2, 3, 4, 5)), "X", 0)
    with pytest.raises(GridMismatchError):
        slice_stack(np.zeros((3, 4)), "X", 0)


def test_slice_stack_transforms():
    img = np.arange(3 * 4 * 5, dtype=np.float32).reshape(1, 3, 4, 5)
    lab = (img > 30).astype(np.uint8)
    assert isinstance(SliceStack("Y"), Transform)
    np.testing.assert_array_equal(SliceStack("y")(img, 3), slice_stack(img, "Y", 3))
    xform = SliceStackd(keys=["image", "label"], plane="z")
    assert isinstance(xform, MapTransform)
    out = xform({"image": img, "label": torch.as_tensor(lab), "slice_index": np.int64(4), "id": 7})
    np.testing.assert_array_equal(out["image"], img[0][:, :, [3, 4, 4]].transpose(2, 0, 1))
    assert isinstance(out["label"], torch.Tensor) and out["label"].shape == (3, 3, 4)
    np.testing.assert_array_equal(out["label"].numpy(), slice_stack(lab, "Z", 4))
    assert out["slice_plane"] == "Z" and out["slice_index"] == 4 and out["id"] == 7
    custom = SliceStackd(keys="image", plane="X", index_key="pos", plane_key="view")
    out = custom({"image": img, "pos": torch.tensor(0)})
    assert out["view"] == "X" and out["pos"] == 0 and out["image"].shape == (3, 4, 5)
    with pytest.raises(ConfigError):
        xform({"image": img, "label": lab})  # no index
    with pytest.raises(ConfigError):
        xform({"image": img, "label": lab, "slice_index": 5})  # outside the Z axis (size 5)


def test_iter_stacks():
    vol = np.random.default_rng(1).integers(0, 9, (4, 5, 7))
    for plane in PLANES:
        n = vol.shape[plane_axis(plane)]
        seen = []
        for indices, batch in iter_stacks(vol, plane, batch_size=2):
            assert batch.shape[0] == len(indices) <= 2
            for b, j in enumerate(indices):
                np.testing.assert_array_equal(batch[b], slice_stack(vol, plane, int(j)))
            seen.extend(int(j) for j in indices)
        assert seen == list(range(n))
    batches = list(iter_stacks(torch.as_tensor(vol)[None], "Z", batch_size=10))
    assert len(batches) == 1 and isinstance(batches[0][1], torch.Tensor)
    assert tuple(batches[0][1].shape) == (7, 3, 4, 5)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError):
            next(iter_stacks(vol, "Z", bad))


# --- back to a volume ----------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("plane", PLANES)
def test_label_round_trip_exact(shape, plane):
    label = np.random.default_rng(sum(shape)).integers(0, 3, shape).astype(np.uint8)
    stacks = _all_stacks(label, plane)
    back = stacks_to_volume(stacks, plane, shape)
    assert back.shape == shape and back.dtype == np.float32
    np.testing.assert_array_equal(back, label)


@pytest.mark.parametrize("plane", PLANES)
def test_probability_round_trip(plane):
    prob = np.random.default_rng(3).random((5, 7, 3), dtype=np.float32)
    back = stacks_to_volume(torch.as_tensor(_all_stacks(prob, plane)), plane, prob.shape)
    assert isinstance(back, torch.Tensor) and back.dtype == torch.float32
    np.testing.assert_allclose(back.numpy(), prob, rtol=0, atol=1e-6)


def test_stacks_to_volume_averages_covering_stacks():
    # Stacks whose values say which stack they are: voxel j averages stacks j-1, j, j+1.
    n, shape = 4, (2, 3, 4)
    stacks = np.zeros((n, 3, 2, 3), dtype=np.float32)
    for j in range(n):
        stacks[j] = 10.0 * j
    stacks[0, 0] = 1000.0  # repeated edge channels are copies: ignored
    stacks[n - 1, 2] = 1000.0
    out = stacks_to_volume(stacks, "Z", shape)
    expected = [(0 + 10) / 2, (0 + 10 + 20) / 3, (10 + 20 + 30) / 3, (20 + 30) / 2]
    for j in range(n):
        np.testing.assert_allclose(out[:, :, j], expected[j], rtol=1e-6)
    single = stacks_to_volume(np.stack([np.full((3, 2, 3), 4.0)]), "Z", (2, 3, 1))
    np.testing.assert_array_equal(single, np.full((2, 3, 1), 4.0))


@pytest.mark.parametrize("plane", PLANES)
def test_accumulator_out_of_order_batches(plane):
    shape = (6, 4, 9)
    prob = np.random.default_rng(4).random(shape, dtype=np.float32)
    stacks = _all_stacks(prob, plane)
    # Make the stacks disagree with each other so the order of summation could matter.
    stacks = stacks + np.random.default_rng(5).random(stacks.shape, dtype=np.float32)
    one_shot = stacks_to_volume(stacks, plane, shape)
    n = stacks.shape[0]
    order = np.random.default_rng(6).permutation(n)
    acc = StackAccumulator(plane, (1, *shape))
    for piece in np.array_split(order, 3):
        acc.add(piece.tolist(), torch.as_tensor(stacks[piece]))
    streamed = acc.result()
    assert isinstance(streamed, torch.Tensor) and tuple(streamed.shape) == (1, *shape)
    np.testing.assert_allclose(streamed[0].numpy(), one_shot, rtol=1e-6, atol=1e-6)
    assert acc.result() is streamed
    with pytest.raises(ConfigError):
        acc.add([0], stacks[:1])


def test_accumulator_memory_layout_and_errors():
    acc = StackAccumulator("Y", (3, 5, 2))
    assert acc.counts.shape == (5,)  # counts per position, not per voxel
    acc.add(2, np.ones((3, 3, 2)))  # a single (3, H, W) stack with one index
    assert acc.counts.tolist() == [0, 1, 1, 1, 0]
    with pytest.raises(ConfigError):
        acc.result()  # positions 0 and 4 never covered
    with pytest.raises(GridMismatchError):
        acc.add([0], np.ones((1, 3, 2, 3)))  # wrong plane shape
    with pytest.raises(ConfigError):
        acc.add([0, 1], np.ones((1, 3, 3, 2)))  # count mismatch
    with pytest.raises(ConfigError):
        acc.add([5], np.ones((1, 3, 3, 2)))  # outside the axis
    zeros_in = acc.result(skipped_as_zero=True)
    # Slices 1..3 got 1 from stack 2; a full pass would give them 3, 3, 3 stacks.
    np.testing.assert_allclose(zeros_in[:, 1:4, :], 1 / 3, rtol=1e-6)
    np.testing.assert_array_equal(zeros_in[:, [0, 4], :], 0)
    with pytest.raises(ConfigError):
        stacks_to_volume(np.zeros((4, 3, 3, 2)), "Y", (3, 5, 2))  # 4 stacks for 5 positions
    with pytest.raises(GridMismatchError):
        StackAccumulator("X", (2, 3, 4, 5))


# --- training slice selection --------------------------------------------------------------------


def _label_with_counts(counts, plane="Z", side=(4, 5)):
    """A label whose slices along ``plane`` have exactly ``counts`` organ pixels."""
    slices = []
    for c in counts:
        s = np.zeros(side[0] * side[1], dtype=np.uint8)
        s[:c] = 1
        slices.append(s.reshape(side))
    return np.stack(slices, axis=plane_axis(plane))


def test_slice_pixel_counts():
    lab = _label_with_counts([0, 3, 20, 7], plane="Y")
    assert slice_pixel_counts(lab, "Y").tolist() == [0, 3, 20, 7]
    assert slice_pixel_counts(torch.as_tensor(lab)[None] * 2, "y").tolist() == [0, 3, 20, 7]
    assert slice_pixel_counts(lab, "X").sum() == 30


def test_positive_slice_filter_hand_built():
    # 10 positive slices (counts 1..10) and 3 empty ones across two volumes.
    v0 = _label_with_counts([0, 5, 1, 9, 0, 3])
    v1 = torch.as_tensor(_label_with_counts([2, 10, 0, 4, 6, 7, 8]))[None]
    # floor(0.98 * 10) = 9 -> threshold = 9th largest = 2 -> only the count-1 slice drops.
    selected, threshold = positive_slice_filter([v0, v1], "Z")
    assert threshold == 2
    assert selected == [(0, 1), (0, 3), (0, 5), (1, 0), (1, 1), (1, 3), (1, 4), (1, 5), (1, 6)]
    # floor(0.75 * 10) = 7 -> threshold = 7th largest = 4.
    selected, threshold = positive_slice_filter(iter([v0, v1]), "z", drop_fraction=0.25)
    assert threshold == 4
    assert selected == [(0, 1), (0, 3), (1, 1), (1, 3), (1, 4), (1, 5), (1, 6)]
    # No drop: every positive slice, never an empty one.
    selected, threshold = positive_slice_filter([v0, v1], "Z", drop_fraction=0.0)
    assert threshold == 1 and len(selected) == 10
    assert (0, 0) not in selected and (0, 4) not in selected and (1, 2) not in selected
    # Ties at the threshold are all kept.
    selected, threshold = positive_slice_filter([_label_with_counts([3, 3, 3, 0, 5])], "Z", 0.5)
    assert threshold == 3 and selected == [(0, 0), (0, 1), (0, 2), (0, 4)]
    # A single positive slice is kept (n_keep is at least 1).
    assert positive_slice_filter([_label_with_counts([0, 4, 0])], "Z") == ([(0, 1)], 4)


def test_positive_slice_filter_other_planes_and_errors():
    lab = _label_with_counts([0, 6, 2, 0], plane="X")
    assert positive_slice_filter([lab], "X", 0.0) == ([(0, 1), (0, 2)], 2)
    with pytest.raises(DatasetError):
        positive_slice_filter([np.zeros((3, 3, 3))], "Z")
    with pytest.raises(DatasetError):
        positive_slice_filter([], "Z")
    for bad in (-0.1, 1.0, "x"):
        with pytest.raises(ConfigError):
            positive_slice_filter([lab], "X", bad)
    with pytest.raises(ConfigError):
        positive_slice_filter([lab], "K")


def test_positive_slice_filter_drops_about_two_percent():
    rng = np.random.default_rng(7)
    side = (40, 50)
    volumes = []
    for _ in range(5):
        counts = rng.integers(1, side[0] * side[1], 200)
        counts[rng.random(200) < 0.3] = 0  # empty slices
        volumes.append(_label_with_counts(counts.tolist(), side=side))
    all_counts = np.concatenate([slice_pixel_counts(v, "Z") for v in volumes])
    n_pos = int(np.count_nonzero(all_counts))
    selected, threshold = positive_slice_filter(volumes, "Z")
    assert threshold == np.sort(all_counts[all_counts > 0])[::-1][(98 * n_pos) // 100 - 1]
    dropped = n_pos - len(selected)
    assert abs(dropped - 0.02 * n_pos) <= 3
    assert all(all_counts[v * 200 + s] >= threshold > 0 for v, s in selected)
    assert len(set(selected)) == len(selected)
    # Exact floor: 50 positive slices with distinct counts, 2% -> exactly one dropped.
    sel, thr = positive_slice_filter([_label_with_counts(list(range(1, 51)), side=(8, 8))], "Z")
    assert thr == 2 and len(sel) == 49
