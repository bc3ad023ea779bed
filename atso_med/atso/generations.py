"""Generations: the plan of every strategy's trainings, and each training's data list.

The plan is every training, prediction, pseudo-labelling and evaluation of an experiment, in
order. It is a pure function of the configuration and the splits, so a resumed run rebuilds
exactly the plan it was interrupted in and skips the steps its journal marks done. Every step
names its inputs and outputs with paths relative to the experiment folder.

Strategies (``T`` generations, reference set ``R`` in ``K`` folds, labeled set ``S``):

* ``supervised``: M0, trained on ``S`` only. Generation 0 of every other strategy (trained once).
* ``fully_supervised``: trained on ``S`` and ``R`` with ``R``'s true labels; an upper bound for
  the reports, planned only when every reference case has a label.
* ``self_learning``: generation ``t`` fine-tunes the model of ``t - 1`` (its weights initialise
  the student) on ``S`` plus pseudo labels of all of ``R`` predicted by the model of ``t - 1``.
* ``stso``: as self-learning, but every generation starts from the same initial weights.
* ``atso``: fold model ``k`` of generation ``t`` trains from the same initial weights on ``S`` plus
  the pseudo labels of fold ``k`` only; those labels come from models that never trained on fold
  ``k`` (generation ``t - 1``'s other fold model when ``K = 2``, the majority vote of all other
  fold models when ``K > 2``; M0 for ``t = 1``; see :mod:`atso_med.atso.pseudo_labels`). After ``T``
  generations a final model trains on ``S`` plus all pseudo labels of generation ``T``. The
  leave-one-fold-out variant (``fold_training: others``) trains fold model ``k`` on every fold but
  ``k`` instead, and lets it alone label fold ``k``. With ``fold_init: continue`` (beyond the paper)
  every ATSO model continues its own chain instead of starting from scratch, as self-learning's
  does: fold model ``k`` fine-tunes fold model ``k`` of ``t - 1`` (M0 at ``t = 1``), and a model of
  all of generation ``t``'s labels, trained at every generation, fine-tunes that of ``t - 1`` (M0 at
  ``t = 1``; it labels nothing, and the last is the final model). So ATSO then differs from
  self-learning only in who labels the reference set: ATSO's fold isolation without its restart.

With a class reduction, the trainings of generations 1..T (and ATSO's final model) score their
pseudo labels at merged groups (the data list marks those items ``label_level: groups``); with its
fine-tuning, each strategy's final model is then fine-tuned on the pseudo labels of generation
``T + 1`` at the classes (ATSO's still made by the fold models that never trained on the fold), as
the model set ``<strategy>/gen<T>/fine``, which :func:`final_model` names the strategy's final one.

Pseudo labels of generation ``t`` (what generation ``t`` trains on) live in
``pseudo_labels/<strategy>/gen<t>/fold<k>/``; they are made by the models of generation ``t - 1``,
so the labels in ``gen<t + 1>`` are also the measure of generation ``t`` on the reference set
("@R", Table 1; "updated R_t", Table 4). Generation ``T + 1``'s labels are made for that measure.

A training's data list (:func:`training_items`, written by :func:`write_training_datalist`) holds
the labeled cases with their labels and the reference cases of its pseudo-label sets with those;
it never reads a reference case's true label, except for the ``fully_supervised`` upper bound
(its plan step lists them as ``truth_ids``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atso_med.atso.layout import (
    ExperimentLayout,
    evaluation_folder,
    fused_predictions_folder,
    pseudo_label_folder,
    training_datalist,
)
from atso_med.atso.pseudo_labels import check_teachers, fold_teachers, needs_probability, pseudo_label_step_id
from atso_med.atso.steps import ModelRef, PlanInputs, Step, train_id
from atso_med.errors import ConfigError, SplitError

if TYPE_CHECKING:
    from atso_med.data.dataset import Dataset
    from atso_med.data.splits import Splits

__all__ = [
    "FINE_TUNED",
    "SNAPSHOT_FILE",
    "build_plan",
    "check_plan",
    "final_model",
    "model_training_ids",
    "training_items",
    "write_training_datalist",
]


#: Name of the stage-S+I snapshot an M0 plane training writes beside its model.pt (``init_mode: snapshot``).
SNAPSHOT_FILE = "snapshot_SI.pt"
#: Strategies whose generations train "from scratch" (and so from the snapshot in ``snapshot`` mode).
_FROM_SCRATCH = ("stso", "atso")
#: Group of the model set that fine-tunes a strategy's final model on fine-class pseudo labels.
FINE_TUNED = "fine"


def final_model(strategy: str, generations: int, fine_tune: bool = False) -> ModelRef:
    """A semi-supervised strategy's final model set: its last generation's (ATSO: trained on all
    pseudo labels), or with ``fine_tune`` that model fine-tuned on fine-class pseudo labels."""
    return ModelRef(strategy, generations, FINE_TUNED if fine_tune else "all")


class _PlanBuilder:
    def __init__(self, inputs: PlanInputs) -> None:
        self.inputs = inputs
        self.steps: list[Step] = []
        self.ids: set[str] = set()
        self.truth = set(inputs.with_truth)
        self.folds = [list(fold) for fold in inputs.reference]

    # -------------------------------------------------------------- primitives

    def add(self, step: Step) -> Step:
        if step.id in self.ids:
            raise ConfigError(f"internal error: step {step.id} planned twice")
        missing = [r for r in step.requires if r not in self.ids]
        if missing:
            raise ConfigError(f"internal error: step {step.id} requires unplanned {missing}")
        self.steps.append(step)
        self.ids.add(step.id)
        return step

    def case_set_ids(self, case_set: str) -> list[str]:
        if case_set == "test":
            return list(self.inputs.test)
        return list(self.folds[int(case_set[len("fold") :])])

    def train(
        self,
        model: ModelRef,
        pseudo: Mapping[int, str] | None = None,
        truth_folds: bool = False,
        finetune_from: ModelRef | None = None,
        grouped: bool = False,
    ) -> list[str]:
        """Plan the plane trainings of one model set; returns their step ids.

        Args:
            model: the model set.
            pseudo: fold index -> id of the step that wrote that fold's pseudo labels.
            truth_folds: train on every reference fold with its true labels (fully supervised).
            finetune_from: initialise each plane from this model's same plane (self-learning).
            grouped: score the pseudo labels at the merged groups of the class reduction.
        """
        pseudo = dict(pseudo or {})
        level = {"label_level": "groups"} if grouped else {}
        pseudo_labels = {}
        for k, pid in sorted(pseudo.items()):
            labels = self.step(pid).params
            entry = {"dir": labels["output_dir"], "ids": self.folds[k], **level}
            if "confidence" in labels:  # the students leave the voxels marked uncertain out of their loss
                entry["uncertain"] = True
            pseudo_labels[f"fold{k}"] = entry
        truth_ids = [i for fold in self.folds for i in fold] if truth_folds else []
        train_ids = list(self.inputs.labeled) + [i for k in sorted(pseudo) for i in self.folds[k]] + truth_ids
        ids = []
        snapshot = self.inputs.init_mode == "snapshot"
        m0 = ModelRef("supervised", 0)
        for plane in self.inputs.planes:
            requires = list(pseudo.values())
            init: dict[str, Any] = {"kind": "scratch"}
            if finetune_from is not None:
                requires.append(train_id(finetune_from, plane))
                init = {
                    "kind": "finetune",
                    "from": finetune_from.key,
                    "weights": f"{finetune_from.plane_folder(plane)}/model.pt",
                }
            elif snapshot and model == m0:
                init = {"kind": "scratch", "save_snapshot": SNAPSHOT_FILE}
            elif snapshot and model.strategy in _FROM_SCRATCH:
                requires.append(train_id(m0, plane))
                init = {"kind": "snapshot", "from": m0.key, "weights": f"{m0.plane_folder(plane)}/{SNAPSHOT_FILE}"}
            step = Step(
                id=train_id(model, plane),
                kind="train",
                requires=requires,
                params={
                    "model": model.key,
                    "plane": plane,
                    "output_dir": model.plane_folder(plane),
                    "datalist": training_datalist(model.key),
                    "labeled_ids": list(self.inputs.labeled),
                    "pseudo_labels": pseudo_labels,
                    "truth_ids": truth_ids,
                    "train_ids": train_ids,
                    "init": init,
                },
                tags={"strategy": model.strategy, "generation": model.generation, "model": model.group},
            )
            ids.append(self.add(step).id)
        return ids

    def predict(self, model: ModelRef, case_set: str, save_probability: bool = False) -> str | None:
        """Plan a prediction of ``case_set`` by ``model`` (once: later calls reuse it) and its evaluation."""
        step_id = f"predict/{model.key}/{case_set}"
        if step_id in self.ids:
            step = self.step(step_id)
            if save_probability and not step.params["save_probability"]:
                raise ConfigError(f"internal error: {step_id} planned without the probabilities a vote needs")
            return step_id
        ids = self.case_set_ids(case_set)
        if not ids:
            return None
        self.add(
            Step(
                id=step_id,
                kind="predict",
                requires=[train_id(model, plane) for plane in self.inputs.planes],
                params={
                    "model": model.key,
                    "model_dir": model.folder,
                    "planes": list(self.inputs.planes),
                    "set": case_set,
                    "ids": ids,
                    "output_dir": model.predictions(case_set),
                    "save_probability": bool(save_probability),
                },
                tags={
                    "strategy": model.strategy,
                    "generation": model.generation,
                    "model": model.group,
                    "set": case_set,
                },
            )
        )
        self.evaluate(step_id)
        return step_id

    def vote(
        self,
        step_id: str,
        sources: Sequence[str],
        output_dir: str,
        ids: Sequence[str],
        purpose: str,
        tags: Mapping[str, Any],
    ) -> str:
        """Plan a vote (or, with one source, a copy) of prediction folders into ``output_dir``.

        Pseudo labels also get their uncertain voxels marked with ``pseudo_label_confidence``.
        """
        source_steps = [self.step(s) for s in sources]
        threshold = self.inputs.pseudo_label_confidence
        confidence = {"confidence": threshold} if purpose == "pseudo" and threshold is not None else {}
        self.add(
            Step(
                id=step_id,
                kind="fuse",
                requires=list(sources),
                params={
                    "purpose": purpose,
                    "sources": [s.params["output_dir"] for s in source_steps],
                    "teachers": [s.params["model"] for s in source_steps],
                    "ids": list(ids),
                    "output_dir": output_dir,
                    **confidence,
                },
                tags=dict(tags),
            )
        )
        self.evaluate(step_id)
        return step_id

    def evaluate(self, producer_id: str) -> str | None:
        """Plan the evaluation of a prediction or pseudo-label folder (cases with a label only)."""
        producer = self.step(producer_id)
        ids = [i for i in producer.params["ids"] if i in self.truth]
        if not ids:
            return None
        target = producer.params["output_dir"]
        return self.add(
            Step(
                id=f"evaluate/{target}",
                kind="evaluate",
                requires=[producer_id],
                params={"target": target, "ids": ids, "output_dir": evaluation_folder(target)},
                tags={**producer.tags, "producer": producer.kind},
            )
        ).id

    def step(self, step_id: str) -> Step:
        for step in reversed(self.steps):
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    # -------------------------------------------------------------- strategies

    def build(self) -> list[Step]:
        inputs = self.inputs
        K, T = len(self.folds), inputs.generations
        m0 = ModelRef("supervised", 0)
        self.train(m0)
        self.predict(m0, "test")
        for k in range(K):  # the first pseudo labels of every strategy
            self.predict(m0, f"fold{k}", save_probability=self._labels_need_probability(1))
        if "fully_supervised" in inputs.strategies and all(i in self.truth for fold in self.folds for i in fold):
            upper = ModelRef("fully_supervised", 0)
            self.train(upper, truth_folds=True)
            self.predict(upper, "test")

        # Teachers of generation t: one model per fold (ATSO) or one for all folds (others).
        teachers: dict[str, list[ModelRef]] = {
            "self_learning": [m0],
            "stso": [m0],
            "atso": [m0] * K,
        }
        grouped = inputs.class_reduction
        continued = inputs.fold_init == "continue"
        last_labels: dict[str, dict[int, str]] = {}
        for t in range(1, T + 2):
            for strategy in ("self_learning", "stso", "atso"):
                if strategy not in inputs.strategies:
                    continue
                pseudo = self._pseudo_labels(strategy, t, teachers[strategy])
                if t == T + 1:
                    last_labels[strategy] = pseudo  # made for the last generation's @R (and a fine-tuning)
                    continue
                if strategy == "atso":
                    teachers[strategy] = self._atso_generation(t, pseudo, teachers[strategy])
                    if continued:  # the model of all labels continues its own chain, as self-learning's
                        self._atso_all_labels(t, pseudo, previous=ModelRef("atso", t - 1) if t > 1 else m0)
                else:
                    model = ModelRef(strategy, t)
                    previous = teachers[strategy][0]
                    finetune_from = previous if strategy == "self_learning" else None
                    self.train(model, pseudo=pseudo, finetune_from=finetune_from, grouped=grouped)
                    self.predict(model, "test")
                    for k in range(K):
                        self.predict(model, f"fold{k}", save_probability=self._labels_need_probability(1))
                    teachers[strategy] = [model]
        if "atso" in inputs.strategies and T >= 1 and not continued:
            self._atso_all_labels(T, {k: pseudo_label_step_id("atso", T, k) for k in range(K)})
        if inputs.fine_tune and T >= 1:
            for strategy, labels in last_labels.items():
                fine = final_model(strategy, T, fine_tune=True)
                self.train(fine, pseudo=labels, finetune_from=final_model(strategy, T))
                self.predict(fine, "test")
        self.add(Step(id="report", kind="report", requires=[s.id for s in self.steps]))
        return self.steps

    def _pseudo_labels(self, strategy: str, generation: int, teachers: list[ModelRef]) -> dict[int, str]:
        """Plan the pseudo labels of every fold for ``generation``; returns fold -> step id."""
        K = len(self.folds)
        out = {}
        for k in range(K):
            voters = fold_teachers(strategy, k, teachers, self.inputs.fold_training)
            sources = [
                self.predict(model, f"fold{k}", save_probability=self._labels_need_probability(len(voters)))
                for model in voters
            ]
            out[k] = self.vote(
                pseudo_label_step_id(strategy, generation, k),
                [s for s in sources if s is not None],
                pseudo_label_folder(strategy, generation, k),
                self.folds[k],
                purpose="pseudo",
                tags={
                    "strategy": strategy,
                    "generation": generation - 1,
                    "model": "pseudo",
                    "set": f"fold{k}",
                    "labels_of": generation,
                },
            )
        return out

    def _labels_need_probability(self, voters: int) -> bool:
        """Whether the predictions that make pseudo labels keep their probabilities (an even vote's ties,
        or the uncertain voxels of ``pseudo_label_confidence``)."""
        return needs_probability(voters) or self.inputs.pseudo_label_confidence is not None

    def _atso_all_labels(self, t: int, pseudo: Mapping[int, str], previous: ModelRef | None = None) -> None:
        """Plan ATSO's model of all of generation ``t``'s pseudo labels (the final one at ``t = T``).

        From scratch (Algorithm 1, line 8: only at ``T``), or fine-tuning ``previous``.
        """
        model = ModelRef("atso", t)
        self.train(model, pseudo=pseudo, finetune_from=previous, grouped=self.inputs.class_reduction)
        if t == self.inputs.generations:
            self.predict(model, "test")

    def _atso_generation(self, t: int, pseudo: Mapping[int, str], previous: Sequence[ModelRef]) -> list[ModelRef]:
        """Plan generation ``t``'s fold models (``previous``: generation ``t - 1``'s, or M0 per fold)."""
        K = len(self.folds)
        leave_one_out = self.inputs.fold_training == "others"
        models = [ModelRef("atso", t, f"fold{k}") for k in range(K)]
        for k, model in enumerate(models):
            folds = [j for j in range(K) if j != k] if leave_one_out else [k]
            # A continued fold model only ever trains on the folds it does not label: isolation holds.
            finetune_from = previous[k] if self.inputs.fold_init == "continue" else None
            self.train(
                model,
                pseudo={j: pseudo[j] for j in folds},
                finetune_from=finetune_from,
                grouped=self.inputs.class_reduction,
            )
        test_sources = []
        for k, model in enumerate(models):
            test_sources.append(self.predict(model, "test", save_probability=needs_probability(K)))
            for j in range(K):
                # Labels of fold j at t + 1: voted by the K - 1 models other than j's, or (leave-one-fold-out)
                # made by j's model alone; a model's predictions of the folds it trained on are for the report.
                labels_fold = j == k if leave_one_out else j != k
                if labels_fold or self.inputs.own_fold_predictions:
                    voters = 1 if leave_one_out else K - 1
                    self.predict(
                        model, f"fold{j}", save_probability=labels_fold and self._labels_need_probability(voters)
                    )
        if test_sources[0] is not None:
            self.vote(
                f"fuse/atso/gen{t}/test",
                test_sources,
                fused_predictions_folder(t, "test"),
                list(self.inputs.test),
                purpose="ensemble",
                tags={"strategy": "atso", "generation": t, "model": "fused", "set": "test"},
            )
        return models


def build_plan(inputs: PlanInputs) -> list[Step]:
    """Every step of an experiment, in an order that respects their dependencies.

    Args:
        inputs: strategies, generations, planes and the roles of the cases.

    Returns:
        The steps; the last is the report. The plan is checked with :func:`check_plan`.

    Raises:
        ConfigError: fewer than 2 folds, no labeled case, or a broken invariant.
    """
    if len(inputs.reference) < 2:
        raise ConfigError(f"ATSO needs at least 2 reference folds, got {len(inputs.reference)}")
    if not inputs.labeled:
        raise ConfigError("no labeled case to train M0 on")
    steps = _PlanBuilder(inputs).build()
    check_plan(steps, inputs)
    return steps


def model_training_ids(steps: Sequence[Step]) -> dict[str, set[str]]:
    """Model key -> every case id any of its plane trainings (or its fine-tuning ancestors) saw."""
    seen: dict[str, set[str]] = {}
    for step in steps:  # plan order: an ancestor is always planned before its student
        if step.kind != "train":
            continue
        ids = set(step.params["train_ids"])
        init = step.params["init"]
        if init.get("kind") in ("finetune", "snapshot"):  # weights inherit what their source saw
            ids |= seen.get(init["from"], set())
        seen.setdefault(step.params["model"], set()).update(ids)
    return seen


def check_plan(steps: Sequence[Step], inputs: PlanInputs) -> None:
    """Check the invariants the method rests on; raise before any work if one is broken.

    * No training sees a test case; only ``fully_supervised`` sees reference cases' true labels.
    * ATSO: every pseudo label of fold ``k`` comes from models that never trained on fold ``k``
      (including what a teacher inherited by fine-tuning).
    * Every from-scratch training of a plane is configured identically for initialisation (the
      trainer also records a hash of the actual initial weights of every training).

    Raises:
        ConfigError: naming the step that breaks an invariant.
    """
    test = set(inputs.test)
    folds = [set(fold) for fold in inputs.reference]
    seen = model_training_ids(steps)
    by_id = {s.id: s for s in steps}
    for step in steps:
        if step.kind == "train":
            leaked = test & set(step.params["train_ids"])
            if leaked:
                raise ConfigError(f"internal error: {step.id} would train on test case(s) {sorted(leaked)}")
            if step.params["truth_ids"] and step.tags["strategy"] != "fully_supervised":
                raise ConfigError(f"internal error: {step.id} would train on reference cases' true labels")
        check_teachers(step, folds, seen)
        for required in step.requires:
            if required not in by_id:
                raise ConfigError(f"internal error: {step.id} requires unknown step {required}")


def training_items(
    dataset: Dataset,
    splits: Splits,
    pseudo_labels: Mapping[str, str | os.PathLike] | None = None,
    reference_truth: Iterable[str] = (),
    uncertain: Mapping[str, str | os.PathLike] | None = None,
) -> list[dict[str, str]]:
    """The items of a training's data list: labeled cases with their labels, reference cases with pseudo labels.

    The ground truth of a reference case (its ``label`` in dataset.json, kept for evaluation)
    must never reach training. This function therefore reads ``case.label`` only for ids of
    ``splits.labeled``; for reference ids it reads ``case.image`` and the ``pseudo_labels``
    mapping and nothing else, except the ids named in ``reference_truth``: the fully supervised
    upper bound trains on those reference cases' true labels, and this is the one place that
    decides it. A reference case without a pseudo label is left out (it is unlabeled at this stage).

    Args:
        dataset: the dataset.
        splits: the roles; validated against ``dataset`` first.
        pseudo_labels: case id -> pseudo label file, for reference cases only.
        reference_truth: reference case ids that train on their true label (the fully
            supervised bound only; empty for every semi-supervised strategy).
        uncertain: case id -> mask of its pseudo label's uncertain voxels (``pseudo_label_confidence``),
            for pseudo-labelled cases only; the item gets it as ``uncertain``.

    Returns:
        Items ``{"id", "image", "label", "source"}`` with ``source`` ``"labeled"``, ``"pseudo"``
        or ``"truth"``; labeled cases first (in split order), then reference cases.

    Raises:
        SplitError: the splits do not fit the dataset, or a pseudo label is given for an id
            that is not a reference case (a pseudo label for a test case would leak it into
            training; one for a labeled case would hide its truth), a ``reference_truth`` id that
            is not a reference case or also has a pseudo label, or has no label.
    """
    splits.validate(dataset)
    pseudo = {str(k): Path(v) for k, v in (pseudo_labels or {}).items()}
    truth = [str(i) for i in reference_truth]
    reference = splits.reference_ids
    misplaced = sorted(set(truth) - set(reference)) + sorted(set(truth) & set(pseudo))
    if misplaced:
        raise SplitError(
            f"true labels asked for ids that are not unlabeled reference cases: {', '.join(map(repr, misplaced))}"
        )
    stray = sorted(set(pseudo) - set(reference))
    if stray:
        roles = splits.roles()
        detail = ", ".join(f"{i!r} ({roles.get(i, 'not in splits')})" for i in stray)
        raise SplitError(f"pseudo labels given for ids that are not reference cases: {detail}")
    uncertain = {str(k): Path(v) for k, v in (uncertain or {}).items()}
    unpaired = sorted(set(uncertain) - set(pseudo))
    if unpaired:
        raise SplitError(
            f"uncertain-voxel masks given for cases without a pseudo label: {', '.join(map(repr, unpaired))}"
        )

    items: list[dict[str, str]] = []
    for case_id in splits.labeled:
        case = dataset.case(case_id)
        # validate() guarantees a label here; checked again so a bad list can never be built.
        if case.label is None:
            raise SplitError(f"labeled case {case_id!r} has no label in dataset.json")
        items.append({"id": case_id, "image": str(case.image), "label": str(case.label), "source": "labeled"})
    for case_id in reference:
        if case_id not in pseudo:
            continue
        image = dataset.case(case_id).image  # the image only: the reference case's label is never read
        item = {"id": case_id, "image": str(image), "label": str(pseudo[case_id]), "source": "pseudo"}
        if case_id in uncertain:
            item["uncertain"] = str(uncertain[case_id])
        items.append(item)
    for case_id in truth:
        case = dataset.case(case_id)
        if case.label is None:
            raise SplitError(f"the fully supervised bound needs the label of reference case {case_id!r}")
        items.append({"id": case_id, "image": str(case.image), "label": str(case.label), "source": "truth"})
    return items


def write_training_datalist(layout: ExperimentLayout, dataset: Dataset, splits: Splits, step: Step) -> Path:
    """Write the data list of a training step: its :func:`training_items` and the validation cases.

    Args:
        layout: the experiment folder.
        dataset: the experiment's data set.
        splits: its splits.
        step: a ``train`` step of the plan (its ``pseudo_labels``, ``truth_ids`` and ``train_ids``).

    Returns:
        The data list file (``models/<strategy>/gen<t>/<group>/datalist.json``).

    Raises:
        ConfigError: the items differ from the cases the plan says the training sees.
    """
    from atso_med.data.datalist import write_datalist
    from atso_med.data.dataset import evaluation_datalist

    pseudo, uncertain, grouped = {}, {}, set()
    for entry in step.params["pseudo_labels"].values():
        for case_id in entry["ids"]:
            pseudo[case_id] = layout.case_file(entry["dir"], case_id)
            if entry.get("uncertain"):
                uncertain[case_id] = layout.case_file(entry["dir"], case_id, "uncertain")
        if entry.get("label_level") == "groups":
            grouped.update(entry["ids"])
    items = training_items(dataset, splits, pseudo, reference_truth=step.params["truth_ids"], uncertain=uncertain)
    trained = [item["id"] for item in items]
    if sorted(trained) != sorted(step.params["train_ids"]):
        raise ConfigError(f"internal error: the data list of {step.id} differs from its plan")
    for item in items:
        if item["id"] in grouped:  # the class reduction: scored at the merged groups
            item["label_level"] = "groups"
    validation = evaluation_datalist(dataset, splits.validation) if splits.validation else []
    return write_datalist(layout.path(step.params["datalist"]), items, validation, dataset.labels)
