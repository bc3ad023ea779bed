"""MONAI cumulative metric for engines: the global DSC over every sample an evaluator sees."""

from __future__ import annotations

import torch
from monai.metrics import CumulativeIterationMetric

from atso_med.metrics.dice import pooled_dice


class GlobalDiceMetric(CumulativeIterationMetric):
    """DSC of all samples counted as one volume: ``2 sum|P & G| / (sum|P| + sum|G|)``.

    Slice-wise DSC averages are dominated by the many small organ cross-sections at the ends of an
    organ; counting voxels over all samples weighs each voxel once, as a volume DSC does. Both
    empty gives 1.0.

    Args:
        threshold: probability at or above which a prediction counts as organ.
    """

    def __init__(self, threshold: float = 0.5):
        super().__init__()
        self.threshold = float(threshold)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        prediction = y_pred >= self.threshold
        truth = y > 0.5
        dims = tuple(range(1, prediction.ndim))
        return torch.stack([(prediction & truth).sum(dims), prediction.sum(dims), truth.sum(dims)], dim=1).to(
            torch.float64
        )

    def aggregate(self) -> torch.Tensor:
        counts = self.get_buffer()
        if counts is None or counts.numel() == 0:
            return torch.tensor(float("nan"))
        return torch.tensor(pooled_dice(counts.reshape(-1, 3).to(torch.int64).tolist()), dtype=torch.float64)
