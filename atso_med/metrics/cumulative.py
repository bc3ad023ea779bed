"""MONAI cumulative metric for engines: the global DSC over every sample an evaluator sees."""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric

from atso_med.flags import as_count
from atso_med.metrics.dice import pooled_dice


class GlobalDiceMetric(CumulativeIterationMetric):
    """DSC of all samples counted as one volume: ``2 sum|P & G| / (sum|P| + sum|G|)``.

    Slice-wise DSC averages are dominated by the many small organ cross-sections at the ends of an
    organ; counting voxels over all samples weighs each voxel once, as a volume DSC does. Both
    empty gives 1.0. With several classes (class-major channels, as RSTN orders them) each class is
    pooled on its own and the result is the mean over the classes that the truth holds, so the
    liver's voxels do not drown a small organ's.

    Args:
        threshold: probability at or above which a prediction counts as organ.
        num_classes: the classes C of the channels (1: every channel is the one organ).
    """

    def __init__(self, threshold: float = 0.5, num_classes: int = 1):
        super().__init__()
        self.threshold = float(threshold)
        self.num_classes = as_count(num_classes, "num_classes")

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Per sample and class: ``(|P & G|, |P|, |G|)``, shape (B, C, 3)."""
        batch = y_pred.shape[0]
        prediction = (y_pred >= self.threshold).reshape(batch, self.num_classes, -1)
        truth = (y > 0.5).reshape(batch, self.num_classes, -1)
        return torch.stack([(prediction & truth).sum(2), prediction.sum(2), truth.sum(2)], dim=2).to(torch.float64)

    def aggregate(self) -> torch.Tensor:
        counts = self.get_buffer()
        if counts is None or counts.numel() == 0:
            return torch.tensor(float("nan"))
        by_class = counts.reshape(-1, self.num_classes, 3).to(torch.int64).transpose(0, 1).tolist()
        present = [c for c in by_class if any(truth for _, _, truth in c)] or by_class
        return torch.tensor(sum(pooled_dice(c) for c in present) / len(present), dtype=torch.float64)
