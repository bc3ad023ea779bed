"""The U-Net backbone that lets RSTN train from random weights."""

from __future__ import annotations

import pytest
import torch

from atso_med.errors import ConfigError
from atso_med.networks import RSTN_PRESETS, UNet2d, build_rstn, equalize_boxes, initialize_rstn


@pytest.mark.parametrize("size", [(64, 64), (48, 23), (7, 5), (100, 33)])
def test_unet_logits_come_back_at_the_input_size(size):
    net = UNet2d(channels=(4, 8, 16), strides=(1, 2), num_res_units=0).eval()
    x = torch.rand(2, 3, *size)
    assert net(x).shape == (2, 3, *size)


def test_unet_crops_its_padding_back_at_the_right_place():
    """unet_tiny's strides divide by 4: an 18x14 input is padded to 20x16, one pixel on each side."""
    net = initialize_rstn(build_rstn("unet_tiny"), seed=0).coarse.eval()
    x = torch.rand(1, 3, 18, 14)
    canvas = torch.zeros(1, 3, 20, 16)
    canvas[..., 1:19, 1:15] = x
    with torch.no_grad():
        assert torch.allclose(net(x), net(canvas)[..., 1:19, 1:15], atol=1e-5)
        assert not torch.allclose(net(x), net(canvas)[..., 0:18, 1:15], atol=1e-3)


def test_unet_presets_build_and_seed_bit_identically():
    for name, preset in RSTN_PRESETS.items():
        if preset["backbone"] != "unet":
            continue
        a = initialize_rstn(build_rstn(name), seed=7)
        torch.manual_seed(123)  # the global RNG must not matter
        b = initialize_rstn(build_rstn(name), seed=7)
        c = initialize_rstn(build_rstn(name), seed=8)
        sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
        assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point() and sa[k].numel() > 10), name


def test_unet_rstn_trains_in_every_mode_and_gradients_reach_both_halves():
    model = initialize_rstn(build_rstn("unet_tiny"), seed=0)
    image = torch.rand(3, 3, 40, 24)
    label = torch.zeros(3, 3, 40, 24)
    label[:, :, 10:20, 5:12] = 1
    for mode in ("S", "I", "J"):
        model.zero_grad()
        out = model.forward_parts(
            image, label=label, mode=mode, margins=torch.tensor([[1, 2, 3, 4], [0, 0, 0, 0], [5, 5, 5, 5]])
        )
        (out.coarse.mean() + out.fine.mean()).backward()
        assert out.coarse.shape == out.fine.shape == (3, 3, 40, 24)
        assert model.coarse.net.model[0].conv.weight.grad.abs().sum() > 0
        fine_grad = [p.grad for n, p in model.fine.named_parameters() if p.grad is not None]
        assert fine_grad and sum(float(g.abs().sum()) for g in fine_grad) > 0
        # outside every box the fine probability is exactly 0
        for i, (top, bottom, left, right) in enumerate(out.boxes.tolist()):
            outside = torch.ones(40, 24, dtype=torch.bool)
            outside[top:bottom, left:right] = False
            assert not outside.any() or float(out.fine[i][:, outside].abs().max()) == 0.0


def test_equalized_boxes_share_one_size_and_contain_their_originals():
    boxes = torch.tensor([[0, 10, 5, 9], [30, 60, 40, 64], [20, 22, 0, 3], [63, 64, 63, 64]])
    grown = equalize_boxes(boxes, 64, 64)
    assert {(bottom - top, right - left) for top, bottom, left, right in grown.tolist()} == {(30, 24)}
    for (top, bottom, left, right), (g_top, g_bottom, g_left, g_right) in zip(
        boxes.tolist(), grown.tolist(), strict=True
    ):
        assert g_top <= top and g_bottom >= bottom and g_left <= left and g_right >= right
        assert g_top >= 0 and g_left >= 0 and g_bottom <= 64 and g_right <= 64


def test_training_forward_with_equal_boxes_runs_the_fine_half_once_per_batch():
    model = initialize_rstn(build_rstn("unet_tiny"), seed=0)
    calls = []
    model.fine.register_forward_hook(lambda module, args, output: calls.append(args[0].shape))
    image = torch.rand(3, 3, 40, 24)
    label = torch.zeros(3, 3, 40, 24)
    label[0, :, 2:6, 2:6] = 1
    label[1, :, 10:30, 5:20] = 1
    label[2, :, 30:38, 10:14] = 1
    out = model.forward_parts(image, label, mode="S", margins=1, equal_boxes=True)
    assert len(calls) == 1 and calls[0][0] == 3
    assert len({(bottom - top, right - left) for top, bottom, left, right in out.boxes.tolist()}) == 1
    calls.clear()
    model.forward_parts(image, label, mode="S", margins=1)
    assert len(calls) == 3  # one call per box size otherwise


def test_unet_rejects_bad_options():
    with pytest.raises(ConfigError, match="norm"):
        UNet2d(norm="group")
    with pytest.raises(ConfigError, match="stride"):
        UNet2d(channels=(8, 16), strides=(2, 2))
    with pytest.raises(ConfigError, match="backbone"):
        build_rstn("tiny", backbone="resnet")
