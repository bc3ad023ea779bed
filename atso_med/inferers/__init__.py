"""Inferers: how engines call an RSTN (training modes, slice evaluation)."""

from atso_med.inferers.rstn import RSTNSliceInferer, RSTNTrainingInferer

__all__ = ["RSTNSliceInferer", "RSTNTrainingInferer"]
from atso_med.inferers.volume import (
    CoarseToFineInferer,
    InferenceConfig,
    VolumePrediction,
    estimate_peak_host_bytes,
    fuse_planes,
    keep_large_components,
)

__all__ += [
    "CoarseToFineInferer",
    "InferenceConfig",
    "VolumePrediction",
    "estimate_peak_host_bytes",
    "fuse_planes",
    "keep_large_components",
]
