"""Losses of atso-med: the soft Dice loss and RSTN's weighted coarse + fine loss."""

from __future__ import annotations

from atso_med.losses.rstn_loss import RSTNLoss, SoftDiceLoss, probability_bce

__all__ = ["RSTNLoss", "SoftDiceLoss", "probability_bce"]
