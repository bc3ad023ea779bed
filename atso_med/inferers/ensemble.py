"""Inference of a whole canonical volume by several model sets, fused by vote."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from atso_med.devices import resolve_device
from atso_med.errors import ConfigError
from atso_med.inferers.fusion import VoteAccumulator
from atso_med.networks.plane_models import load_model_sets

__all__ = ["EnsembleInferer"]


class EnsembleInferer:
    """Coarse-to-fine inference of a whole canonical volume by one or several model sets, then the vote.

    Args:
        model_sets: ``[{plane: RSTN}, ...]`` (or one set, or anything :func:`load_model_sets`
            accepts).
        config: :class:`~atso_med.inferers.coarse_to_fine.InferenceConfig` (default: the reference's).
        device: where the networks run.
    """

    def __init__(self, model_sets: Any, config: Any = None, device: str | torch.device | None = None) -> None:
        from atso_med.inferers.coarse_to_fine import CoarseToFineInferer, InferenceConfig

        self.device = resolve_device(device)
        self.config = InferenceConfig() if config is None else config
        self.model_sets = load_model_sets(model_sets, self.device)
        self.inferers = [CoarseToFineInferer(models, self.config, self.device) for models in self.model_sets]
        counts = [inferer.num_classes for inferer in self.inferers]
        if len(set(counts)) > 1:
            raise ConfigError(f"the model sets segment different numbers of classes: {counts}")
        #: C, the classes the models segment (1: an organ mask).
        self.num_classes = counts[0]

    def __call__(self, image: np.ndarray, truth: np.ndarray | None = None) -> dict[str, Any]:
        """Segment one windowed canonical volume.

        Raises:
            ConfigError: a truth with models of several classes.

        Returns:
            ``{"mask": uint8, "probability": float32, "sets": [{"planes", "rounds", "stopped_round"}, ...]}``:
            a mask and one probability volume, or for C > 1 classes a label map and ``(C, I, J, K)``
            probabilities.
        """
        if truth is not None and self.num_classes > 1:
            raise ConfigError(
                f"a per-round DSC against a truth is measured for one organ; these models segment {self.num_classes} "
                "classes (evaluate the written label maps per class instead: atso-med evaluate --classes)"
            )
        if len(self.inferers) == 1:
            result = self.inferers[0](image, truth)
            mask, probability = result.mask, result.probability
            sets = [self._set_record(self.inferers[0], result)]
        else:
            vote, sets = VoteAccumulator(num_classes=None if self.num_classes == 1 else self.num_classes), []
            for inferer in self.inferers:
                result = inferer(image, truth)
                vote.add(result.mask, result.probability)
                sets.append(self._set_record(inferer, result))
                del result
            mask, probability = vote.result()
        return {"mask": mask, "probability": probability, "sets": sets}

    @staticmethod
    def _set_record(inferer: Any, result: Any) -> dict[str, Any]:
        return {
            "planes": list(inferer.planes),
            "rounds": list(result.rounds),
            "stopped_round": int(result.stopped_round),
        }
