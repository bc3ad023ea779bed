"""The plan of an experiment: every training, prediction, pseudo-labelling and evaluation, in order.

The plan is a pure function of the configuration and the splits, so a resumed run rebuilds
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
  fold models when ``K > 2``; M0 for ``t = 1``). After ``T`` generations a final model trains on
  ``S`` plus all pseudo labels of generation ``T``.

Pseudo labels of generation ``t`` (what generation ``t`` trains on) live in
``pseudo_labels/<strategy>/gen<t>/fold<k>/``; they are made by the models of generation ``t - 1``,
so the labels in ``gen<t + 1>`` are also the measure of generation ``t`` on the reference set
("@R", Table 1; "updated R_t", Table 4). Generation ``T + 1``'s labels are made for that measure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from atso_med.atso import layout
from atso_med.errors import ConfigError

#: Kinds of step, in the order they appear within a generation.
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
        return layout.model_folder(self.key)

    def plane_folder(self, plane: str) -> str:
        """One plane's training folder (holds ``model.pt``)."""
        return layout.plane_folder(self.key, plane)

    def predictions(self, case_set: str) -> str:
        """Folder of this model's predictions of ``case_set`` (``test`` or ``fold<k>``)."""
        return layout.predictions_folder(self.key, case_set)


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
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
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


#: Name of the stage-S+I snapshot an M0 plane training writes beside its model.pt (``init_mode: snapshot``).
SNAPSHOT_FILE = "snapshot_SI.pt"
#: Strategies whose generations train "from scratch" (and so from the snapshot in ``snapshot`` mode).
_FROM_SCRATCH = ("stso", "atso")


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
    ) -> list[str]:
        """Plan the plane trainings of one model set; returns their step ids.

        Args:
            model: the model set.
            pseudo: fold index -> id of the step that wrote that fold's pseudo labels.
            truth_folds: train on every reference fold with its true labels (fully supervised).
            finetune_from: initialise each plane from this model's same plane (self-learning).
        """
        pseudo = dict(pseudo or {})
        pseudo_labels = {
            f"fold{k}": {"dir": self.step(pid).params["output_dir"], "ids": self.folds[k]}
            for k, pid in sorted(pseudo.items())
        }
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
                    "datalist": layout.training_datalist(model.key),
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

    def fuse(
        self,
        step_id: str,
        sources: Sequence[str],
        output_dir: str,
        ids: Sequence[str],
        purpose: str,
        tags: Mapping[str, Any],
    ) -> str:
        """Plan a vote (or, with one source, a copy) of prediction folders into ``output_dir``."""
        source_steps = [self.step(s) for s in sources]
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
                params={"target": target, "ids": ids, "output_dir": layout.evaluation_folder(target)},
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
        for k in range(K):
            self.predict(m0, f"fold{k}")
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
        for t in range(1, T + 2):
            for strategy in ("self_learning", "stso", "atso"):
                if strategy not in inputs.strategies:
                    continue
                pseudo = self._pseudo_labels(strategy, t, teachers[strategy])
                if t == T + 1:
                    continue  # the last generation's labels are made for its @R measure only
                if strategy == "atso":
                    teachers[strategy] = self._atso_generation(t, pseudo)
                else:
                    model = ModelRef(strategy, t)
                    previous = teachers[strategy][0]
                    self.train(model, pseudo=pseudo, finetune_from=previous if strategy == "self_learning" else None)
                    self.predict(model, "test")
                    for k in range(K):
                        self.predict(model, f"fold{k}")
                    teachers[strategy] = [model]
        if "atso" in inputs.strategies and T >= 1:
            final = ModelRef("atso", T, "all")
            self.train(final, pseudo={k: pseudo_id("atso", T, k) for k in range(K)})
            self.predict(final, "test")
        self.add(Step(id="report", kind="report", requires=[s.id for s in self.steps]))
        return self.steps

    def _pseudo_labels(self, strategy: str, generation: int, teachers: list[ModelRef]) -> dict[int, str]:
        """Plan the pseudo labels of every fold for ``generation``; returns fold -> step id."""
        K = len(self.folds)
        out = {}
        for k in range(K):
            if strategy == "atso":
                # Never a model that trained on fold k: fold k's own model is left out. Equal
                # teachers (M0 standing in for every fold model at t = 1) vote once.
                voters = _unique([teachers[j] for j in range(K) if j != k])
            else:
                voters = [teachers[0]]
            sources = [
                self.predict(model, f"fold{k}", save_probability=_needs_probability(len(voters))) for model in voters
            ]
            out[k] = self.fuse(
                pseudo_id(strategy, generation, k),
                [s for s in sources if s is not None],
                layout.pseudo_label_folder(strategy, generation, k),
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

    def _atso_generation(self, t: int, pseudo: Mapping[int, str]) -> list[ModelRef]:
        K = len(self.folds)
        models = [ModelRef("atso", t, f"fold{k}") for k in range(K)]
        for k, model in enumerate(models):
            self.train(model, pseudo={k: pseudo[k]})
        test_sources = []
        for k, model in enumerate(models):
            test_sources.append(self.predict(model, "test", save_probability=_needs_probability(K)))
            for j in range(K):
                if j != k or self.inputs.own_fold_predictions:
                    # Labels of fold j at t + 1 are voted by the K - 1 models other than j's.
                    self.predict(model, f"fold{j}", save_probability=j != k and _needs_probability(K - 1))
        if test_sources[0] is not None:
            self.fuse(
                f"fuse/atso/gen{t}/test",
                test_sources,
                layout.fused_predictions_folder(t, "test"),
                list(self.inputs.test),
                purpose="ensemble",
                tags={"strategy": "atso", "generation": t, "model": "fused", "set": "test"},
            )
        return models


def train_id(model: ModelRef, plane: str) -> str:
    """Step id of one plane's training of ``model``."""
    return f"train/{model.key}/plane_{plane}"


def pseudo_id(strategy: str, generation: int, fold: int) -> str:
    """Step id of the pseudo labels of ``fold`` that ``generation`` of ``strategy`` trains on."""
    return f"pseudo/{strategy}/gen{generation}/fold{fold}"


def _needs_probability(voters: int) -> bool:
    # A vote of an even number of model sets breaks ties by their mean probability.
    return voters > 1 and voters % 2 == 0


def _unique(models: Iterable[ModelRef]) -> list[ModelRef]:
    seen: list[ModelRef] = []
    for model in models:
        if model not in seen:
            seen.append(model)
    return seen


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
        if step.kind == "fuse" and step.params["purpose"] == "pseudo" and step.tags["strategy"] == "atso":
            fold = folds[int(step.tags["set"][len("fold") :])]
            for teacher in step.params["teachers"]:
                overlap = fold & seen.get(teacher, set())
                if overlap:
                    raise ConfigError(
                        f"internal error: {step.id} would label fold cases {sorted(overlap)} with {teacher}, which trained on them"
                    )
        for required in step.requires:
            if required not in by_id:
                raise ConfigError(f"internal error: {step.id} requires unknown step {required}")
