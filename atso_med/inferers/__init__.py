"""Inferers: how engines call an RSTN (training modes, slice evaluation)."""

from atso_med.inferers.rstn import RSTNSliceInferer, RSTNTrainingInferer

__all__ = ["RSTNSliceInferer", "RSTNTrainingInferer"]
