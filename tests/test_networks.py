"""Tests of FCN-8s, RSTN, presets, initialisation and parameter groups (tiny widths, CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from atso_med.errors import ConfigError
from atso_med.losses import RSTNLoss, SoftDiceLoss
from atso_med.networks import (
    RSTN,
    RSTN_PRESETS,
    FCN8s,
    SaliencyTransform,
    bilinear_kernel,
    box_from_mask,
    build_rstn,
    initialize_rstn,
    load_state_file,
    parameter_groups,
    sample_training_margins,
)

torch.set_num_threads(2)

# Smaller than the "tiny" preset: enough to exercise every code path, fast on a shared CPU.
MICRO = dict(width=0.0625, fc_channels=8)
VGG_FEATURE_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
TRUNK = [
    "conv1_1",
    "conv1_2",
    "conv2_1",
    "conv2_2",
    "conv3_1",
    "conv3_2",
    "conv3_3",
    "conv4_1",
    "conv4_2",
    "conv4_3",
    "conv5_1",
    "conv5_2",
    "conv5_3",
]


def micro_rstn(seed: int = 0, **kw) -> RSTN:
    return initialize_rstn(build_rstn("tiny", **{**MICRO, **kw}), seed=seed).eval()


def box_label(shape: tuple[int, int], boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    """(B, 3, H, W) label with one rectangle (top, bottom, left, right; exclusive ends) per sample."""
    label = torch.zeros(len(boxes), 3, *shape)
    for i, (top, bottom, left, right) in enumerate(boxes):
        label[i, :, top:bottom, left:right] = 1
    return label


# --------------------------------------------------------------------------------------------
# FCN-8s


@pytest.mark.parametrize("size", [(37, 53), (64, 80), (16, 16), (1, 1), (2, 7), (23, 5)])
def test_fcn8s_output_matches_any_input_size(size):
    torch.manual_seed(0)
    fcn = FCN8s(3, 3, **MICRO).eval()
    out = fcn(torch.rand(2, 3, *size))
    assert out.shape == (2, 3, *size)
    assert torch.isfinite(out).all()


def test_fcn8s_layout_and_frozen_bilinear_decoder():
    fcn = FCN8s(3, 2, width=0.125, fc_channels=16, dropout=0.5)
    assert [fcn.conv1_1.padding, fcn.conv1_2.padding] == [(100, 100), (1, 1)]
    assert fcn.conv3_3.out_channels == 32 and fcn.conv5_3.out_channels == 64
    assert fcn.fc6.kernel_size == (7, 7) and fcn.fc6.out_channels == 16
    assert type(fcn.drop6) is nn.Dropout and fcn.drop6.p == 0.5  # element-wise, as Caffe
    for up, k in ((fcn.upscore2, 4), (fcn.upscore_pool4, 4), (fcn.upscore8, 16)):
        assert up.bias is None and not up.weight.requires_grad
        assert torch.equal(up.weight, bilinear_kernel(2, k))
    # Bilinear: no mixing across channels, and 2x upsampling of a constant stays constant inside.
    k = bilinear_kernel(2, 4)
    assert k[0, 1].abs().sum() == 0 and k[1, 0].abs().sum() == 0
    up = fcn.upscore2(torch.ones(1, 2, 6, 6))
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.ones_like(up[:, :, 2:-2, 2:-2]))
    # round(c * width), at least 1.
    assert FCN8s(width=0.001, fc_channels=1).conv1_1.out_channels == 1


def test_fcn8s_rejects_bad_config_and_input():
    with pytest.raises(ConfigError):
        FCN8s(width=0)
    with pytest.raises(ConfigError):
        FCN8s(dropout=1.0)
    with pytest.raises(ValueError):
        FCN8s(**MICRO)(torch.zeros(1, 1, 8, 8))


# --------------------------------------------------------------------------------------------
# Parameter counts


def test_full_size_parameter_counts():
    # The meta device builds the 268 M-parameter model without allocating or initialising it.
    with torch.device("meta"):
        model = build_rstn("full")
        fcn = FCN8s()
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert total == 268_555_786  # every parameter, the frozen bilinear kernels included
    assert trainable == 268_550_602
    assert total - trainable == 2 * (3 * 3 * 4 * 4 * 2 + 3 * 3 * 16 * 16)
    assert sorted(frozen) == sorted(
        f"{h}.{u}.weight" for h in ("coarse", "fine") for u in ("upscore2", "upscore_pool4", "upscore8")
    )
    assert sum(p.numel() for p in fcn.parameters()) == 134_277_737
    assert sum(p.numel() for p in model.saliency.parameters()) == 312
    assert RSTN_PRESETS["full"] == dict(backbone="fcn8s", width=1.0, fc_channels=4096)


def test_saliency_module_init_and_size():
    sal = SaliencyTransform(3)
    assert sum(p.numel() for p in sal.parameters()) == 312
    assert sal.conv1.kernel_size == (3, 3) and sal.conv2.kernel_size == (5, 5)
    assert torch.equal(sal.conv1.bias, torch.ones(3))
    assert torch.equal(sal.conv2.weight, torch.zeros_like(sal.conv2.weight))
    assert torch.equal(sal.conv2.bias, torch.tensor([1.0, 1.5, 2.0]))
    out = sal(torch.rand(2, 3, 9, 11))
    # Starts as a per-channel constant map.
    assert torch.equal(out, torch.tensor([1.0, 1.5, 2.0]).view(1, 3, 1, 1).expand(2, 3, 9, 11))
    # No final activation: negative outputs pass through.
    with torch.no_grad():
        sal.conv2.bias.fill_(-3.0)
    assert (sal(torch.rand(1, 3, 4, 4)) == -3.0).all()


# --------------------------------------------------------------------------------------------
# RSTN forward


@pytest.mark.parametrize("mode", ["S", "I", "J"])
def test_rstn_shapes_and_fine_zero_outside_box(mode):
    model = micro_rstn()
    h, w = 37, 53
    label = box_label((h, w), [(5, 12, 30, 40), (20, 37, 0, 9)])
    with torch.no_grad():
        out = model.forward_parts(torch.rand(2, 3, h, w), label, mode=mode, margins=3)
    assert out.coarse.shape == out.fine.shape == (2, 3, h, w)
    assert out.coarse.dtype == out.fine.dtype == torch.float32
    assert out.boxes.shape == (2, 4) and out.boxes.dtype == torch.int64
    assert ((out.coarse >= 0) & (out.coarse <= 1)).all() and ((out.fine >= 0) & (out.fine <= 1)).all()
    if mode in "SI":
        assert out.boxes.tolist() == [[2, 15, 27, 43], [17, 37, 0, 12]]
    for i, (top, bottom, left, right) in enumerate(out.boxes.tolist()):
        outside = torch.ones(h, w, dtype=torch.bool)
        outside[top:bottom, left:right] = False
        assert (out.fine[i][:, outside] == 0).all()
        assert (out.fine[i][:, ~outside] > 0).all()


def test_rstn_modes_use_saliency_only_in_i_and_j():
    model = micro_rstn()
    image = torch.rand(1, 3, 20, 24)
    label = box_label((20, 24), [(4, 10, 4, 12)])
    with torch.no_grad():
        s = model.forward_parts(image, label, mode="S", margins=2).fine
        i = model.forward_parts(image, label, mode="I", margins=2).fine
        # Mode S = fine FCN on the raw image in the label's box.
        direct = torch.sigmoid(model.fine(image[:, :, 2:12, 2:14]))
        model.saliency.conv2.bias.fill_(1.0)  # saliency = 1 everywhere -> I equals S
        i_unit = model.forward_parts(image, label, mode="I", margins=2).fine
    assert torch.allclose(s[:, :, 2:12, 2:14], direct, atol=1e-6)
    assert not torch.allclose(s, i)
    assert torch.allclose(s, i_unit, atol=1e-6)


def test_batch_equals_samples_one_by_one_with_different_boxes():
    model = micro_rstn(seed=5)
    torch.manual_seed(1)
    image = torch.rand(3, 3, 30, 34)
    label = box_label((30, 34), [(2, 9, 3, 10), (12, 30, 20, 34), (5, 25, 0, 30)])
    margins = torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0], [5, 5, 5, 5]])
    with torch.no_grad():
        for mode in "SIJ":
            batch = model.forward_parts(image, label, mode=mode, margins=margins)
            if mode != "J":
                assert len({tuple(b) for b in batch.boxes.tolist()}) == 3
            for k in range(3):
                one = model.forward_parts(image[k : k + 1], label[k : k + 1], mode=mode, margins=margins[k : k + 1])
                assert torch.equal(batch.boxes[k], one.boxes[0])
                assert torch.allclose(batch.coarse[k], one.coarse[0], atol=1e-5)
                assert torch.allclose(batch.fine[k], one.fine[0], atol=1e-5)
        masks = label.clone()
        masks[1] = 0  # an empty mask: that sample is skipped and all zero
        fp = model.fine_probability(image, batch.coarse, masks[:, :1], margin=2)
        for k in range(3):
            one = model.fine_probability(image[k : k + 1], batch.coarse[k : k + 1], masks[k : k + 1, :1], margin=2)
            assert torch.allclose(fp[k], one[0], atol=1e-5)
    assert (fp[1] == 0).all() and (fp[0] > 0).any() and (fp[2] > 0).any()


def test_equal_sized_boxes_batched_together_match_one_by_one():
    model = micro_rstn(seed=2)
    image = torch.rand(2, 3, 24, 24)
    label = box_label((24, 24), [(0, 8, 0, 8), (10, 18, 12, 20)])  # same crop size, other places
    with torch.no_grad():
        batch = model.forward_parts(image, label, mode="I", margins=1)
        ones = [model.forward_parts(image[k : k + 1], label[k : k + 1], mode="I", margins=1) for k in range(2)]
    for k in range(2):
        assert torch.allclose(batch.fine[k], ones[k].fine[0], atol=1e-5)


def test_mode_j_box_from_prediction_with_fallbacks():
    model = micro_rstn()
    image = torch.rand(2, 3, 20, 22)
    label = box_label((20, 22), [(3, 6, 4, 9), (0, 0, 0, 0)])
    with torch.no_grad():
        for s in model.coarse.score_layers():
            s.weight.zero_()
            s.bias.fill_(-30.0)  # coarse prediction empty everywhere
        out = model.forward_parts(image, label, mode="J", margins=1)
        assert out.boxes.tolist() == [[2, 7, 3, 10], [0, 20, 0, 22]]  # label, then whole image
        assert model.forward_parts(image, None, mode="J", margins=1).boxes.tolist() == [[0, 20, 0, 22]] * 2
        model.coarse.score_pool3.bias.fill_(0.0)
        model.coarse.score_fr.bias[1] = 100.0  # channel 1 positive everywhere
        out = model.forward_parts(image, label, mode="J", margins=0)
    assert out.boxes.tolist() == [[0, 20, 0, 22]] * 2  # prediction wins over the label


def test_rstn_argument_errors():
    model = micro_rstn()
    image = torch.rand(1, 3, 16, 16)
    with pytest.raises(ConfigError, match="mode"):
        model(image, mode="X")
    with pytest.raises(ConfigError, match="label"):
        model(image, mode="S")
    with pytest.raises(ValueError):
        model(image, torch.zeros(1, 3, 15, 16), mode="I")
    with pytest.raises(ConfigError):
        model(image, torch.ones(1, 3, 16, 16), mode="I", margins=-1)


def test_gradient_reaches_coarse_fcn_through_saliency_only_in_modes_i_j():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 24, 28)
    label = box_label((24, 28), [(3, 12, 4, 15), (10, 20, 12, 26)])
    dice = SoftDiceLoss()
    for mode, expect in (("J", True), ("I", True), ("S", False)):
        model = micro_rstn(seed=1)
        with torch.no_grad():
            # At init conv2's weights are zero, so the saliency map cannot depend on the coarse
            # output yet; one optimiser step would change that, a small perturbation does too.
            model.saliency.conv2.weight.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(0))
        out = model.forward_parts(image, label, mode=mode, margins=2)
        dice(out.fine, label).backward()  # the fine loss alone
        coarse_grads = [p.grad for p in model.coarse.parameters() if p.requires_grad]
        fine_grad = model.fine.conv1_1.weight.grad
        assert fine_grad is not None and fine_grad.abs().sum() > 0
        if expect:
            assert all(g is not None for g in coarse_grads)
            assert model.coarse.conv1_1.weight.grad.abs().sum() > 0
            assert model.coarse.score_fr.weight.grad.abs().sum() > 0
            assert model.saliency.conv1.weight.grad.abs().sum() > 0
        else:
            assert all(g is None or g.abs().sum() == 0 for g in coarse_grads)
            assert model.saliency.conv1.weight.grad is None


def test_autocast_keeps_fill_finite_and_zero():
    model = micro_rstn()
    label = box_label((20, 20), [(5, 9, 5, 9)])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.forward_parts(torch.rand(1, 3, 20, 20), label, mode="I", margins=0)
    assert out.fine.dtype == torch.float32 and torch.isfinite(out.fine).all()
    assert out.fine[..., :5, :].abs().sum() == 0 and (out.fine[..., 5:9, 5:9] > 0).all()


def test_coarse_and_fine_probability_helpers():
    model = micro_rstn()
    image = torch.rand(2, 3, 21, 19)
    with torch.no_grad():
        coarse = model.coarse_probability(image)
        assert torch.allclose(coarse, torch.sigmoid(model.coarse(image)))
        mask = torch.zeros(2, 1, 21, 19)
        mask[0, 0, 10, 8] = 1
        fine = model.fine_probability(image, coarse, mask, margin=2)
        expected = torch.sigmoid(model.fine(image[:1, :, 8:13, 6:11] * model.saliency(coarse[:1, :, 8:13, 6:11])))
    assert fine.shape == (2, 3, 21, 19)
    assert (fine[1] == 0).all()
    assert fine[0, :, :8].abs().sum() == 0 and fine[0, :, 13:].abs().sum() == 0
    # The 5x5 saliency conv sees context outside the box: only the centre pixels agree exactly.
    assert torch.allclose(fine[0, :, 10, 8], expected[0, :, 2, 2], atol=1e-3)


# --------------------------------------------------------------------------------------------
# Boxes and margins


def test_box_from_mask_hand_made_cases():
    mask = torch.zeros(4, 3, 10, 12)
    mask[0, 1, 3:6, 4:8] = 1  # one channel is enough: the box is joint over channels
    mask[0, 2, 7, 5] = 1
    mask[1, 0, 0, 11] = 1  # at the corner: the margin is clipped
    mask[2, :, 4, 4] = 1
    # sample 3 empty -> whole image
    assert box_from_mask(mask, 2).tolist() == [[1, 10, 2, 10], [0, 3, 9, 12], [2, 7, 2, 7], [0, 10, 0, 12]]
    assert box_from_mask(mask, 0).tolist()[:3] == [[3, 8, 4, 8], [0, 1, 11, 12], [4, 5, 4, 5]]
    per_side = torch.tensor([[1, 0, 0, 3], [0, 0, 0, 0], [4, 1, 2, 100], [0, 0, 0, 0]])
    assert box_from_mask(mask, per_side).tolist()[:3] == [[2, 8, 4, 11], [0, 1, 11, 12], [0, 6, 2, 12]]
    assert box_from_mask(mask[:, 1], 1).tolist()[0] == [2, 7, 3, 9]  # (B, H, W) masks
    assert box_from_mask(mask, [0, 1, 2, 3]).tolist()[2] == [4, 6, 2, 8]
    with pytest.raises(ConfigError):
        box_from_mask(mask, -1)
    with pytest.raises(ConfigError):
        box_from_mask(mask, torch.zeros(3, 4, dtype=torch.int64))


def test_training_margin_sampler_statistics():
    n = 4000
    m = sample_training_margins(n, torch.Generator().manual_seed(0))
    assert m.shape == (n, 4) and m.dtype == torch.int64
    all20 = (m == 20).all(dim=1)
    assert 0.46 < all20.float().mean().item() < 0.54
    rnd = m[~all20]
    assert rnd.min() == 0 and rnd.max() == 40
    assert abs(rnd.float().mean().item() - 20.0) < 1.0
    assert len(torch.unique(rnd)) == 41  # every integer of [0, 40]
    # Sides are drawn independently.
    assert (rnd[:, 0] != rnd[:, 1]).float().mean() > 0.9
    again = sample_training_margins(n, torch.Generator().manual_seed(0))
    assert torch.equal(m, again)
    custom = sample_training_margins(
        1000, torch.Generator().manual_seed(1), fixed_margin=5, max_margin=3, fixed_probability=0.25
    )
    fixed = (custom == 5).all(dim=1)
    assert 0.18 < fixed.float().mean().item() < 0.32 and custom[~fixed].max() <= 3


# --------------------------------------------------------------------------------------------
# Presets, initialisation, weights files


def test_build_rstn_presets_and_errors():
    assert set(RSTN_PRESETS) == {"full", "small", "tiny", "unet", "unet_small", "unet_tiny"}
    tiny = build_rstn("tiny")
    assert tiny.coarse.conv1_1.out_channels == 8 and tiny.coarse.fc6.out_channels == 32
    assert tiny.coarse is not tiny.fine and tiny.coarse.conv1_1.weight is not tiny.fine.conv1_1.weight
    assert build_rstn("small", fc_channels=16).fine.fc7.out_channels == 16
    with pytest.raises(ConfigError, match="preset"):
        build_rstn("huge")
    with pytest.raises(ConfigError, match="depth"):
        build_rstn("tiny", depth=3)


def test_seeded_init_is_bit_identical_and_independent_of_global_rng():
    a = micro_rstn(seed=7).state_dict()
    torch.rand(1000)  # consume the global RNG
    build_rstn("tiny")  # and build something else in between
    model = build_rstn("tiny", **MICRO)
    torch.manual_seed(123)
    b = initialize_rstn(model, seed=7).state_dict()
    c = micro_rstn(seed=8).state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["coarse.conv2_1.weight"], c["coarse.conv2_1.weight"])
    assert not torch.equal(a["saliency.conv1.weight"], c["saliency.conv1.weight"])
    assert not torch.equal(a["coarse.fc6.weight"], a["fine.fc6.weight"])  # two independent FCNs
    # The reference init survives the reseeding.
    assert torch.equal(a["saliency.conv2.bias"], torch.tensor([1.0, 1.5, 2.0]))
    assert torch.equal(a["coarse.upscore8.weight"], bilinear_kernel(3, 16))


def test_state_dict_file_round_trip(tmp_path):
    src = micro_rstn(seed=1)
    path = tmp_path / "rstn.pt"
    torch.save(src.state_dict(), path)
    dst = initialize_rstn(build_rstn("tiny", **MICRO), seed=2, weights_file=str(path))
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
    # Wrapped checkpoints with a DataParallel prefix load too.
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, wrapped)
    dst2 = initialize_rstn(build_rstn("tiny", **MICRO), seed=3, weights_file=wrapped)
    assert all(torch.equal(v, dst2.state_dict()[k]) for k, v in src.state_dict().items())


def test_width_mismatch_and_missing_file_are_refused(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.save(build_rstn("tiny").state_dict(), path)
    with pytest.raises(ConfigError) as info:
        initialize_rstn(build_rstn("small"), seed=0, weights_file=path)
    msg = str(info.value)
    assert "coarse.conv1_1.weight" in msg and "(8, 3, 3, 3)" in msg and "(16, 3, 3, 3)" in msg
    with pytest.raises(ConfigError, match="not found"):
        initialize_rstn(build_rstn("tiny"), weights_file=tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    torch.save({"foo.weight": torch.zeros(1)}, junk)
    with pytest.raises(ConfigError, match="unrecognised"):
        initialize_rstn(build_rstn("tiny"), weights_file=junk)


def _fake_vgg16(model: RSTN, fc: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """A torchvision-style VGG16 state dict with the shapes of ``model``'s FCNs."""
    state = {}
    for idx, name in zip(VGG_FEATURE_INDICES, TRUNK, strict=True):
        conv = getattr(model.coarse, name)
        state[f"features.{idx}.weight"] = torch.randn(conv.weight.shape, generator=gen)
        state[f"features.{idx}.bias"] = torch.randn(conv.bias.shape, generator=gen)
    c5 = model.coarse.conv5_3.out_channels
    state["classifier.0.weight"] = torch.randn(fc, c5 * 49, generator=gen)
    state["classifier.0.bias"] = torch.randn(fc, generator=gen)
    state["classifier.3.weight"] = torch.randn(fc, fc, generator=gen)
    state["classifier.3.bias"] = torch.randn(fc, generator=gen)
    state["classifier.6.weight"] = torch.randn(1000, fc, generator=gen)
    state["classifier.6.bias"] = torch.randn(1000, generator=gen)
    return state


@pytest.mark.parametrize("width,fc", [(0.125, 32), (0.0625, 8)])
def test_vgg16_state_dict_mapping(tmp_path, width, fc):
    model = build_rstn("tiny", width=width, fc_channels=fc)
    vgg = _fake_vgg16(model, fc, torch.Generator().manual_seed(0))
    path = tmp_path / "vgg16.pth"
    torch.save(vgg, path)
    initialize_rstn(model, seed=0, weights_file=path)
    c5 = model.coarse.conv5_3.out_channels
    for fcn in (model.coarse, model.fine):
        for idx, name in zip(VGG_FEATURE_INDICES, TRUNK, strict=True):
            assert torch.equal(getattr(fcn, name).weight, vgg[f"features.{idx}.weight"])
            assert torch.equal(getattr(fcn, name).bias, vgg[f"features.{idx}.bias"])
        assert torch.equal(fcn.fc6.weight, vgg["classifier.0.weight"].view(fc, c5, 7, 7))
        assert torch.equal(fcn.fc6.weight[3, 2, 1, 4], vgg["classifier.0.weight"][3, 2 * 49 + 1 * 7 + 4])
        assert torch.equal(fcn.fc7.weight[:, :, 0, 0], vgg["classifier.3.weight"])
        assert torch.equal(fcn.fc7.bias, vgg["classifier.3.bias"])
        for score in fcn.score_layers():
            assert score.weight.abs().sum() == 0 and score.bias.abs().sum() == 0
        assert torch.equal(fcn.upscore2.weight, bilinear_kernel(3, 4))
    assert torch.equal(model.saliency.conv2.bias, torch.tensor([1.0, 1.5, 2.0]))
    # A VGG file of another width is refused, naming the key and both shapes.
    with pytest.raises(ConfigError) as info:
        initialize_rstn(build_rstn("tiny", width=width * 2, fc_channels=fc), weights_file=path)
    assert "features.0.weight" in str(info.value)


def test_fcn8s_state_dict_loads_into_both_halves(tmp_path):
    fcn = FCN8s(3, 21, **MICRO)  # e.g. a 21-class PASCAL model: score layers do not fit and are zeroed
    path = tmp_path / "fcn8s.pth"
    torch.save(fcn.state_dict(), path)
    model = initialize_rstn(build_rstn("tiny", **MICRO), seed=0, weights_file=path)
    for half in (model.coarse, model.fine):
        for name in (*TRUNK, "fc6", "fc7"):
            assert torch.equal(getattr(half, name).weight, getattr(fcn, name).weight)
            assert torch.equal(getattr(half, name).bias, getattr(fcn, name).bias)
        assert all(s.weight.abs().sum() == 0 for s in half.score_layers())


def test_parameter_groups():
    model = micro_rstn()
    groups = {g["name"]: g for g in parameter_groups(model)}
    assert groups["coarse_weight"]["lr"] == 1e-5 and groups["coarse_bias"]["lr"] == 2e-5
    assert groups["fine_weight"]["lr"] == 1e-4 and groups["fine_bias"]["lr"] == 2e-4
    assert groups["coarse_weight"]["weight_decay"] == 5e-4 and groups["fine_bias"]["weight_decay"] == 0.0
    ids = {name: {id(p) for p in g["params"]} for name, g in groups.items()}
    assert id(model.saliency.conv1.weight) in ids["fine_weight"] and id(model.saliency.conv2.bias) in ids["fine_bias"]
    assert id(model.coarse.fc6.bias) in ids["coarse_bias"] and id(model.fine.conv1_1.weight) in ids["fine_weight"]
    grouped = set().union(*ids.values())
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert grouped == trainable and id(model.coarse.upscore8.weight) not in grouped
    assert sum(len(g["params"]) for g in groups.values()) == len(trainable)  # no duplicates
    torch.optim.SGD(list(groups.values()), lr=0.1, momentum=0.99)  # accepted as is
    with pytest.raises(ConfigError):
        parameter_groups(model, coarse_lr=-1.0)


def test_sgd_steps_decrease_loss_on_synthetic_blobs():
    model = initialize_rstn(build_rstn("tiny", dropout=0.0), seed=0).train()
    label = box_label((48, 48), [(10, 26, 12, 30), (20, 40, 18, 34)])
    image = 0.2 + 0.6 * label + 0.05 * torch.randn(label.shape, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.SGD(parameter_groups(model, coarse_lr=0.1, fine_lr=0.1), momentum=0.9)
    loss_fn = RSTNLoss()
    losses = []
    for _ in range(8):
        opt.zero_grad()
        loss = loss_fn(model(image, label, mode="S", margins=4), label)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses
    assert min(losses[-3:]) < min(losses[:3])


def test_forward_returns_coarse_and_fine_stacked_on_channels():
    model = micro_rstn()
    image, label = torch.rand(2, 3, 20, 22), torch.zeros(2, 3, 20, 22)
    label[:, :, 5:9, 6:12] = 1
    with torch.no_grad():
        stacked = model(image, label, mode="I", margins=2)
        parts = model.forward_parts(image, label, mode="I", margins=2)
    assert stacked.shape == (2, 6, 20, 22)
    assert torch.equal(stacked[:, :3], parts.coarse) and torch.equal(stacked[:, 3:], parts.fine)


def test_own_model_and_checkpoint_files_load_as_weights(tmp_path):
    # model.pt and checkpoint_*.pt of a training keep the network under "network", beside
    # non-tensor entries; a fine-tuning starts from such a file directly.
    src = micro_rstn(seed=1)
    path = tmp_path / "model.pt"
    torch.save(
        {"network": src.state_dict(), "config": {"plane": "Z", "preset": "tiny"}, "iteration": 7, "selected": "last"},
        path,
    )
    state = load_state_file(path)
    assert state.keys() == src.state_dict().keys()
    dst = initialize_rstn(build_rstn("tiny", **MICRO), seed=2, weights_file=path)
    assert all(torch.equal(v, dst.state_dict()[k]) for k, v in src.state_dict().items())
