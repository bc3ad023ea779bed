"""Inferers: how an RSTN is called (training modes, slices, whole volumes, ensembles) and how predictions are fused."""

from atso_med.inferers.coarse_to_fine import (
    CoarseToFineInferer,
    InferenceConfig,
    VolumePrediction,
    estimate_peak_host_bytes,
    keep_large_components,
)
from atso_med.inferers.ensemble import EnsembleInferer
from atso_med.inferers.fusion import (
    FUSIONS,
    PlaneFusion,
    VoteAccumulator,
    class_labels,
    ensemble_vote,
    fuse_planes,
    vote_files,
)
from atso_med.inferers.slice_inferers import RSTNSliceInferer, RSTNTrainingInferer

__all__ = [
    "FUSIONS",
    "CoarseToFineInferer",
    "EnsembleInferer",
    "InferenceConfig",
    "PlaneFusion",
    "RSTNSliceInferer",
    "RSTNTrainingInferer",
    "VolumePrediction",
    "VoteAccumulator",
    "class_labels",
    "ensemble_vote",
    "estimate_peak_host_bytes",
    "fuse_planes",
    "keep_large_components",
    "vote_files",
]
