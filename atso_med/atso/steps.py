"""The vocabulary of an experiment's plan: what it is built from, its steps and the model sets they name.

:class:`PlanInputs` is what :func:`atso_med.atso.generations.build_plan` reads of the configuration
and the splits. A :class:`Step` is one journaled unit of work (a plane training, a prediction, a vote, an
evaluation, the report); a :class:`ModelRef` names one model set, and through
:mod:`atso_med.atso.layout` its folders. Every step is plain JSON (``plan.json``): its kind, id and
parameters are persisted, so they stay as they are for an experiment folder to resume.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from atso_med.atso.layout import model_folder, plane_folder, predictions_folder

__all__ = ["STEP_KINDS", "ModelRef", "PlanInputs", "Step", "plan_digest", "train_id"]

#: Kinds of step, in the order they appear within a generation. ``fuse`` is the vote of prediction
#: folders that writes a pseudo-label set (:mod:`atso_med.atso.pseudo_labels`); the name is kept
#: because it is persisted in the plans and journals of existing experiment folders.
STEP_KINDS = ("train", "predict", "fuse", "evaluate", "report")


@dataclass(frozen=True)
class ModelRef:
    """One model set (the plane models of one training group).

    Attributes:
        strategy: the strategy that owns it (``supervised`` owns M0).
        generation: its generation (0 = M0 / fully supervised).
        group: ``"all"`` (trained on all pseudo labels) or ``"fold<k>"`` (an ATSO fold model).
    """

    strategy: str
    generation: int
    group: str = "all"

    @property
    def key(self) -> str:
        """``<strategy>/gen<t>/<group>``: the model's folder below ``models/``."""
        return f"{self.strategy}/gen{self.generation}/{self.group}"

    @property
    def folder(self) -> str:
        """The model set's folder, relative to the experiment folder."""
        return model_folder(self.key)

    def plane_folder(self, plane: str) -> str:
        """One plane's training folder (holds ``model.pt``)."""
        return plane_folder(self.key, plane)

    def predictions(self, case_set: str) -> str:
        """Folder of this model's predictions of ``case_set`` (``test`` or ``fold<k>``)."""
        return predictions_folder(self.key, case_set)


@dataclass
class Step:
    """One unit of work, journaled when finished.

    Attributes:
        id: unique id, also its place in the layout (``train/atso/gen1/fold0/plane_Z``).
        kind: one of :data:`STEP_KINDS`.
        requires: ids of the steps whose outputs it reads.
        params: what it does (JSON-ready; paths relative to the experiment folder).
        tags: what it measures, for the reports (strategy, generation, model, case set).
    """

    id: str
    kind: str
    requires: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The step as plain JSON values (its entry in ``plan.json``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        """The step of a :meth:`to_dict` mapping."""
        return cls(**{k: data[k] for k in ("id", "kind", "requires", "params", "tags")})


@dataclass
class PlanInputs:
    """What the plan is built from (read from the configuration and the splits).

    Attributes:
        strategies: strategies to run (``supervised`` always included).
        generations: T.
        planes: trained planes.
        labeled: labeled case ids.
        reference: the K reference folds.
        test: test case ids.
        with_truth: ids whose label exists (evaluations only read these).
        own_fold_predictions: predict each ATSO fold model on its own fold (report only).
        init_mode: how STSO's and ATSO's from-scratch trainings start: ``random`` (the seeded
            random weights every such training shares) or ``snapshot`` (the paper's Section 4.2:
            M0's weights after stages S and I with a freshly initialised saliency module; those
            trainings then run stage J only).
        fold_training: ATSO's fold models: ``own`` (Algorithm 1: fold model ``k`` trains on fold
            ``k``) or ``others`` (leave-one-fold-out: it trains on every fold but ``k``, and labels ``k``).
        fold_init: ATSO's fold models start from scratch every generation (``scratch``, Algorithm 1)
            or fine-tune the same fold's model of the previous generation (``continue``; the model of
            all labels then continues its own chain too).
        pseudo_label_confidence: mark the pseudo-label voxels whose teachers' mean probability of
            the label's class is below this (``None``: off); students leave them out of their loss.
        class_reduction: generations 1..T train on pseudo labels scored at merged groups.
        fine_tune: after generation T, each strategy's final model is fine-tuned on the fine-class
            pseudo labels of generation T + 1 (with ``class_reduction``).
    """

    strategies: Sequence[str]
    generations: int
    planes: Sequence[str]
    labeled: Sequence[str]
    reference: Sequence[Sequence[str]]
    test: Sequence[str]
    with_truth: Iterable[str]
    own_fold_predictions: bool = True
    init_mode: str = "random"
    class_reduction: bool = False
    fine_tune: bool = False
    fold_training: str = "own"
    fold_init: str = "scratch"
    pseudo_label_confidence: float | None = None


def train_id(model: ModelRef, plane: str) -> str:
    """Step id of one plane's training of ``model``."""
    return f"train/{model.key}/plane_{plane}"


def plan_digest(steps: Sequence[Step]) -> str:
    """Digest of a plan: a journal only resumes the plan it was written for."""
    text = json.dumps([s.to_dict() for s in steps], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
