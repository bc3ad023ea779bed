"""Pseudo labels: who labels which reference fold, and the writing of a pseudo-label set.

The reference set ``R`` is dealt into ``K`` folds. A generation's students train on the labeled
cases plus pseudo labels of reference folds, made by the previous generation (its teachers):

* ATSO: fold ``k`` is labelled only by models that never trained on it, the teachers of every fold
  but ``k`` (generation ``t - 1``'s other fold model when ``K = 2``, the majority vote of all other
  fold models when ``K > 2``; M0, standing in for every fold model, at ``t = 1``). In the
  leave-one-fold-out variant (``fold_training: others``, beyond the paper) fold model ``k`` trains
  on every fold but ``k``, and labels fold ``k`` alone.
* Self-learning and STSO: every fold is labelled by the one teacher of the generation.

A pseudo-label set (``pseudo_labels/<strategy>/gen<t>/fold<k>/<case_id>.nii.gz``, what generation
``t`` trains on) is a copy of its single teacher's predictions, or the majority vote of several
teachers' predictions (:func:`atso_med.inferers.fusion.vote_files`; an even number of voters breaks
ties by their mean probability, so their predictions keep a probability map). The same vote makes
ATSO's ensemble prediction of the test set. With ``pseudo_label_confidence`` (beyond the paper, off
in its protocol) the voxels where the teachers' mean probability of the label's class is below it
are marked beside each label (``<case_id>_uncertain.nii.gz``), and students leave them out of their
loss. In the plan, writing a set is a step of kind ``fuse``
with id ``pseudo/<strategy>/gen<t>/fold<k>``: both are persisted in existing experiment folders.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from atso_med.atso.layout import ExperimentLayout
from atso_med.atso.logs import logger
from atso_med.atso.steps import ModelRef, Step
from atso_med.data.class_selection import ClassSelection
from atso_med.errors import ConfigError
from atso_med.files import atomic_write

__all__ = ["check_teachers", "fold_teachers", "needs_probability", "pseudo_label_step_id", "write_pseudo_labels"]


def pseudo_label_step_id(strategy: str, generation: int, fold: int) -> str:
    """Step id of the pseudo labels of ``fold`` that ``generation`` of ``strategy`` trains on."""
    return f"pseudo/{strategy}/gen{generation}/fold{fold}"


def fold_teachers(strategy: str, fold: int, teachers: Sequence[ModelRef], fold_training: str = "own") -> list[ModelRef]:
    """The model sets whose predictions label reference fold ``fold``.

    Args:
        strategy: ``atso``, ``self_learning`` or ``stso``.
        fold: the reference fold labelled.
        teachers: the previous generation's models: one per fold for ATSO, one for the other strategies.
        fold_training: ATSO's fold models: ``own`` (Algorithm 1: fold ``j``'s model trained on fold
            ``j``) or ``others`` (leave-one-fold-out: fold ``j``'s model trained on every fold but ``j``).

    Returns:
        ATSO: the teachers that never trained on ``fold``, each model once (M0 standing in for every
        fold model at generation 1 votes once): every fold's teacher but ``fold``'s own, or with
        ``others`` ``fold``'s own alone. Otherwise: the single teacher.
    """
    if strategy == "atso" and fold_training == "others":
        return [teachers[fold]]
    if strategy == "atso":
        return _unique(teacher for j, teacher in enumerate(teachers) if j != fold)
    return [teachers[0]]


def needs_probability(voters: int) -> bool:
    """Whether the predictions of ``voters`` model sets that vote must keep their probability maps.

    A vote of an even number of model sets breaks ties by their mean probability.
    """
    return voters > 1 and voters % 2 == 0


def check_teachers(step: Step, folds: Sequence[set[str]], seen: Mapping[str, set[str]]) -> None:
    """Refuse an ATSO pseudo-label step whose fold a teacher trained on (also through its ancestors).

    Args:
        step: a plan step; only ATSO's pseudo-label votes are checked.
        folds: the case ids of each reference fold.
        seen: model key -> every case id its trainings (and the weights they started from) saw.

    Raises:
        ConfigError: naming the step, the cases and the teacher.
    """
    if step.kind != "fuse" or step.params["purpose"] != "pseudo" or step.tags["strategy"] != "atso":
        return
    fold = folds[int(step.tags["set"][len("fold") :])]
    for teacher in step.params["teachers"]:
        overlap = fold & seen.get(teacher, set())
        if overlap:
            raise ConfigError(
                f"internal error: {step.id} would label fold cases {sorted(overlap)} with {teacher}, which trained on them"
            )


def write_pseudo_labels(
    layout: ExperimentLayout, step: Step, selection: ClassSelection | None = None
) -> dict[str, Any]:
    """Write a pseudo-label set (or ATSO's ensemble prediction): one teacher's masks copied, or several voted.

    Args:
        layout: the experiment folder.
        step: the ``fuse`` step; its parameters name the ``purpose``, the ``sources`` (prediction
            folders), their ``teachers`` (model keys), the case ``ids`` and the ``output_dir``, and
            with ``confidence`` (``pseudo_label_confidence``) each label also gets the mask of the
            voxels its teachers are unsure of (``<id>_uncertain.nii.gz``, from their mean probability).
        selection: several classes: the predictions are label maps, voted class by class.

    Returns:
        The journal's result: ``{"cases", "teachers", "output_dir"}``, and with ``confidence`` the
        voxel counts ``uncertain: {"voxels", "uncertain", "organ", "uncertain_organ"}``.
    """
    from atso_med.inferers.fusion import uncertain_voxels_file, vote_files

    params = step.params
    sources = [layout.path(s) for s in params["sources"]]
    layout.path(params["output_dir"]).mkdir(parents=True, exist_ok=True)
    logger.info(
        "%s %s: %s of %s",
        params["purpose"],
        step.id,
        "copy" if len(sources) == 1 else "majority vote",
        ", ".join(params["teachers"]),
    )
    classes = None if selection is None else selection.classes
    confidence = params.get("confidence")
    counts: dict[str, int] = {}
    for case_id in params["ids"]:
        target = layout.case_file(params["output_dir"], case_id)
        if len(sources) == 1:
            with atomic_write(target) as tmp:
                shutil.copyfile(layout.case_file(params["sources"][0], case_id), tmp)
        else:
            vote_files(sources, case_id, target, classes)
        if confidence is not None:
            uncertain = layout.case_file(params["output_dir"], case_id, "uncertain")
            for key, value in uncertain_voxels_file(sources, target, case_id, uncertain, confidence, classes).items():
                counts[key] = counts.get(key, 0) + value
    result = {"cases": len(params["ids"]), "teachers": params["teachers"], "output_dir": params["output_dir"]}
    if confidence is not None:
        result["uncertain"] = counts
        logger.info(
            "%s: %.1f %% of the voxels uncertain (teacher probability < %g), %.1f %% of the organ's",
            step.id,
            100.0 * counts["uncertain"] / max(counts["voxels"], 1),
            confidence,
            100.0 * counts["uncertain_organ"] / max(counts["organ"], 1),
        )
    return result


def _unique(models: Iterable[ModelRef]) -> list[ModelRef]:
    seen: list[ModelRef] = []
    for model in models:
        if model not in seen:
            seen.append(model)
    return seen
