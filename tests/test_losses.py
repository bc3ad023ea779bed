"""Tests of the soft Dice loss and RSTN's weighted coarse + fine loss."""

from __future__ import annotations

import pytest
import torch

from atso_med.errors import ConfigError
from atso_med.losses import RSTNLoss, SoftDiceLoss
from atso_med.networks import RSTNOutput, build_rstn, initialize_rstn, parameter_groups

torch.set_num_threads(2)


def test_soft_dice_perfect_disjoint_and_empty():
    loss = SoftDiceLoss()
    g = torch.zeros(2, 3, 4, 5)
    g[0, 1, 1:3, 2:4] = 1
    g[1, :, 0, 0] = 1
    assert loss(g, g).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(1 - g, g).item() == pytest.approx(1.0, abs=1e-6)
    # Empty prediction of an empty target: eps / eps -> a loss of 0, not NaN.
    empty = torch.zeros(1, 3, 4, 4)
    assert loss(empty, empty).item() == pytest.approx(0.0, abs=1e-6)
    # Predicting nothing where there is something: loss ~1.
    assert loss(torch.zeros_like(g), g).item() == pytest.approx(1.0, abs=1e-6)


def test_soft_dice_hand_computed_values_and_batch_mean():
    loss = SoftDiceLoss(eps=0.0)
    p = torch.tensor([[[[0.5, 0.5], [0.0, 0.0]]], [[[0.9, 0.1], [0.2, 0.8]]]])
    g = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]], [[[1.0, 0.0], [0.0, 1.0]]]])
    # Sample 0: 1 - 2*0.5 / (1 + 1) = 0.5.  Sample 1: 1 - 2*1.7 / (2.0 + 2) = 0.15.
    assert loss(p[:1], g[:1]).item() == pytest.approx(0.5)
    assert loss(p[1:], g[1:]).item() == pytest.approx(0.15)
    assert loss(p, g).item() == pytest.approx((0.5 + 0.15) / 2)
    # Over all channels together, not per channel: one channel perfect, one empty in both.
    p3 = torch.zeros(1, 2, 2, 2)
    p3[0, 0, 0, 0] = 1
    assert SoftDiceLoss()(p3, p3.clone()).item() == pytest.approx(0.0, abs=1e-6)
    # eps as specified: 1 - (2*0 + eps) / (0 + 1 + eps).
    eps = 1e-6
    one = torch.zeros(1, 1, 1, 2, dtype=torch.float64)
    one[..., 0] = 1
    assert SoftDiceLoss(eps)(torch.zeros_like(one), one).item() == pytest.approx(1 - eps / (1 + eps), abs=1e-9)


def test_soft_dice_gradient_and_errors():
    p = torch.full((1, 3, 4, 4), 0.5, requires_grad=True)
    g = torch.zeros(1, 3, 4, 4, dtype=torch.uint8)
    g[..., :2, :] = 1
    SoftDiceLoss()(p, g).backward()
    assert (p.grad[..., :2, :] < 0).all() and (p.grad[..., 2:, :] > 0).all()
    with pytest.raises(ValueError):
        SoftDiceLoss()(p, torch.zeros(1, 3, 4, 5))
    with pytest.raises(ConfigError):
        SoftDiceLoss(eps=-1.0)


def test_rstn_loss_weights_parts_and_broadcast():
    g = torch.zeros(2, 3, 6, 6)
    g[:, :, 1:4, 1:4] = 1
    coarse = torch.rand(2, 3, 6, 6, requires_grad=True)
    fine = torch.rand(2, 3, 6, 6, requires_grad=True)
    out = RSTNOutput(coarse=coarse, fine=fine, boxes=torch.zeros(2, 4, dtype=torch.int64))
    loss_fn = RSTNLoss()
    total = loss_fn(out, g)
    dice = SoftDiceLoss()
    c, f = dice(coarse, g), dice(fine, g)
    assert total.item() == pytest.approx((c / 3 + 2 * f / 3).item(), rel=1e-6)
    assert loss_fn.last_parts["coarse"].item() == pytest.approx(c.item())
    assert loss_fn.last_parts["fine"].item() == pytest.approx(f.item())
    assert not loss_fn.last_parts["total"].requires_grad
    total.backward()
    assert coarse.grad.abs().sum() > 0 and fine.grad.abs().sum() > 0
    # A (B, 1, H, W) label is broadcast over the 3 outputs; a dict output works too.
    assert loss_fn({"coarse": coarse, "fine": fine}, g[:, :1]).item() == pytest.approx(total.item(), rel=1e-6)
    only_fine = RSTNLoss(coarse_weight=0.0, fine_weight=1.0).components(out, g)
    assert only_fine["total"].item() == pytest.approx(f.item())
    with pytest.raises(ValueError):
        loss_fn(coarse, g)
    with pytest.raises(ConfigError):
        RSTNLoss(coarse_weight=-1.0)


def test_rstn_loss_in_monai_supervised_trainer():
    from monai.engines import SupervisedTrainer

    model = initialize_rstn(build_rstn("tiny", width=0.0625, fc_channels=8, dropout=0.0), seed=0)
    label = torch.zeros(2, 3, 24, 24)
    label[0, :, 4:12, 5:15] = 1
    label[1, :, 10:20, 8:22] = 1
    image = 0.2 + 0.6 * label
    data = [{"image": image, "label": label}] * 3

    def prepare_batch(batch, device=None, non_blocking=False, **_):
        # The trainer's SimpleInferer forwards these kwargs to RSTN.forward.
        return batch["image"], batch["label"], (), {"label": batch["label"], "mode": "J", "margins": 2}

    loss_fn = RSTNLoss()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=model,
        optimizer=torch.optim.SGD(parameter_groups(model, coarse_lr=0.05, fine_lr=0.05), momentum=0.9),
        loss_function=loss_fn,
        prepare_batch=prepare_batch,
        decollate=False,
    )
    before = model.fine.conv1_1.weight.detach().clone()
    trainer.run()
    assert trainer.state.iteration == 3
    assert trainer.state.output["pred"].shape[1] == 6  # coarse and fine probabilities stacked on channels
    loss = trainer.state.output["loss"].item()
    assert loss == pytest.approx(loss_fn.last_parts["total"].item(), rel=1e-6)
    assert 0.0 < loss < 1.0
    assert not torch.equal(before, model.fine.conv1_1.weight)
