"""Lazy learning, measured: how closely students fit their teachers' labels, and where the labels drift.

The paper's Section 2.2 names *lazy learning*: a student that fits its teacher's pseudo labels keeps
the teacher's errors on the cases it trained on. Three figures make it visible, all from the files
and evaluations an experiment already holds (``report.json``'s ``lazy_learning``):

* ``students``: for every model set that trained on pseudo labels and predicted the reference cases
  it trained on: ``fit``, its prediction of those cases scored against the pseudo labels it trained
  on (1.0: it reproduces them, errors included); ``truth``, the same prediction against the true
  labels; ``labels``, the pseudo labels it trained on against the true labels. A student that
  memorises its teacher has ``fit`` near 1 and ``truth`` near ``labels``; ``truth`` above
  ``labels`` means the student corrected its teacher.
* ``atso_own_minus_other``: per ATSO generation, the DSC on fold ``k`` of the fold models that
  trained on fold ``k`` (Algorithm 1: fold ``k``'s own model; leave-one-fold-out: every model but
  ``k``'s) minus that of the fold models that did not (true labels, mean over folds). The sign
  convention is the paper's Table 4 read as "own - other": negative means the model that trained
  on a fold is worse on it, the lazy-learning signature (the paper: -3.3 and -0.2 points on R(1)
  and R(2) at G1 on NIH).
* ``repeated_errors`` (where the true labels are at hand): the share of a pseudo-label set's wrong
  voxels (label differs from the truth) at which a model predicts that same wrong label. Per student,
  on the cases it trained on; for ATSO per generation, on each fold, for the fold models that trained
  on that fold's labels (``own``) and for those that did not (``other``). A student memorises its
  teacher's errors case by case where ``own`` is well above ``other``; where both are high, the
  errors are shared by every model trained on the same labeled cases, and labelling a fold with a
  model that never saw it (ATSO) has little to correct.
* ``pseudo_labels``: per strategy and labelled generation, the true-positive, false-positive and
  false-negative voxels of every pseudo label against the truth, their sums, precision, recall
  and volume ratio (pseudo-label volume / true volume), so a drift towards over- or
  under-segmentation over generations shows.
* ``uncertain_voxels`` (with ``pseudo_label_confidence`` and the true labels): per strategy and
  labelled generation, the share of the pseudo labels' wrong voxels that the masks of uncertain
  voxels take out of the students' loss (``wrong_marked``), the share of their right organ voxels
  taken out with them (``right_marked``), and the labels' DSC on the voxels left (``confident_dsc``).

The ATSO final model (trained on all pseudo labels, never asked to predict the reference set) has
no ``fit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atso_med.atso.config import SEMI_SUPERVISED
from atso_med.atso.layout import ExperimentLayout, pseudo_label_folder
from atso_med.atso.steps import ModelRef
from atso_med.metrics.pooling import pool_results, result_dsc

if TYPE_CHECKING:
    import numpy as np

    from atso_med.data.class_selection import ClassSelection

__all__ = [
    "ReferenceTruth",
    "has_lazy_learning",
    "lazy_learning_rows",
    "measure_lazy_learning",
    "pseudo_label_rows",
    "student_trainings",
]


@dataclass(frozen=True)
class ReferenceTruth:
    """The true labels of an experiment's cases, read as its output classes (for ``repeated_errors``).

    Attributes:
        files: case id -> its label file (cases without a label are left out).
        foreground: the label values of the organ (one organ; ``None``: every non-zero value).
        selection: the classes (several classes: label maps are compared class by class).
        classes: the labels' declared values (``dataset.json``'s ``labels``).
    """

    files: Mapping[str, Path]
    foreground: Sequence[int] | None = None
    selection: ClassSelection | None = None
    classes: Mapping[int, str] | None = None

    def read(self, mask_files: Sequence[Path], case_id: str) -> tuple[list[np.ndarray], np.ndarray]:
        """A case's predictions or pseudo labels and its truth (read once), as class indices or organ masks on one grid."""
        from atso_med.metrics.evaluation_inputs import read_predictions

        masks, truth, _ = read_predictions(
            mask_files, self.files[case_id], self.foreground, self.classes, selection=self.selection
        )
        return masks, truth


def student_trainings(train_steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The model sets of a plan that trained on pseudo labels, one entry each (not one per plane).

    Args:
        train_steps: the plan's ``train`` steps as dicts (``Step.to_dict()``).

    Returns:
        ``{"strategy", "generation", "group", "pseudo_labels": {"fold<k>": folder}}`` per model set,
        in plan order.
    """
    students: dict[str, dict[str, Any]] = {}
    for step in train_steps:
        params, tags = step["params"], step["tags"]
        if not params["pseudo_labels"] or params["model"] in students:
            continue
        students[params["model"]] = {
            "strategy": tags["strategy"],
            "generation": int(tags["generation"]),
            "group": tags["model"],
            "pseudo_labels": {fold: entry["dir"] for fold, entry in params["pseudo_labels"].items()},
        }
    return list(students.values())


def _fit(layout: ExperimentLayout, prediction_folder: str, label_folder: str) -> dict[str, Any] | None:
    """A prediction folder scored against the pseudo-label folder it was trained on (every case of it)."""
    from atso_med.metrics.evaluation import evaluate_predictions

    ids = layout.mask_ids(label_folder)
    if not ids or not all(layout.case_file(prediction_folder, i).is_file() for i in ids):
        return None
    report = evaluate_predictions(
        [(i, layout.case_file(prediction_folder, i), layout.case_file(label_folder, i)) for i in ids]
    )
    return {
        "dsc": {r["id"]: float(r["dsc"]) for r in report.per_case},
        "counts": {r["id"]: [r["intersection"], r["prediction_voxels"], r["truth_voxels"]] for r in report.per_case},
    }


def _students(layout: ExperimentLayout, trainings: Sequence[Mapping[str, Any]], evaluations: Mapping) -> list[dict]:
    rows = []
    for training in trainings:
        model = ModelRef(training["strategy"], training["generation"], training["group"])
        folds = sorted(training["pseudo_labels"])
        fits = [_fit(layout, model.predictions(fold), training["pseudo_labels"][fold]) for fold in folds]
        if any(fit is None for fit in fits):
            continue  # the model did not predict the cases it trained on (ATSO's final model)
        rows.append(
            {
                "model": model.key,
                "strategy": model.strategy,
                "generation": model.generation,
                "folds": folds,
                "fit": pool_results(fits),
                "truth": pool_results([evaluations.get(model.predictions(fold)) for fold in folds]),
                "labels": pool_results([evaluations.get(training["pseudo_labels"][fold]) for fold in folds]),
            }
        )
    return rows


def _own_minus_other(evaluations: Mapping, trainings: Sequence[Mapping[str, Any]], folds: int) -> dict[str, Any]:
    """Per ATSO generation and fold: DSC of the fold models that trained on the fold minus those that did not."""
    out = {}
    trained = {
        (int(t["generation"]), t["group"]): set(t["pseudo_labels"])
        for t in trainings
        if t["strategy"] == "atso" and t["group"].startswith("fold")
    }
    for t in sorted({generation for generation, _ in trained}):
        per_fold = {}
        for k in range(folds):
            own, other = [], []
            for j in range(folds):
                result = evaluations.get(ModelRef("atso", t, f"fold{j}").predictions(f"fold{k}"))
                if result:
                    (own if f"fold{k}" in trained.get((t, f"fold{j}"), set()) else other).append(result["mean_dsc"])
            if own and other:
                own_dsc, other_dsc = sum(own) / len(own), sum(other) / len(other)
                per_fold[f"fold{k}"] = {"own": own_dsc, "other": other_dsc, "difference": own_dsc - other_dsc}
        if per_fold:
            differences = [entry["difference"] for entry in per_fold.values()]
            out[str(t)] = {"folds": per_fold, "mean_difference": sum(differences) / len(differences)}
    return out


def _repeated(
    layout: ExperimentLayout, truth: ReferenceTruth, labels: str, predictions: Sequence[str]
) -> list[tuple[int, int] | None]:
    """Per prediction folder: (wrong label voxels it repeats, wrong label voxels) over the cases of a
    pseudo-label folder; ``None`` for a folder that lacks one of them. Each file is read once."""
    import numpy as np

    counts: list[list[int] | None] = [[0, 0] for _ in predictions]
    for case_id in layout.mask_ids(labels):
        label_file = layout.case_file(labels, case_id)
        if case_id not in truth.files:
            continue
        files = {i: layout.case_file(folder, case_id) for i, folder in enumerate(predictions) if counts[i] is not None}
        for i, path in list(files.items()):
            if not path.is_file():
                counts[i] = None
                del files[i]
        (label, *predicted), true = truth.read([label_file, *files.values()], case_id)
        errors = label != true
        wrong = int(np.count_nonzero(errors))
        for i, prediction in zip(files, predicted, strict=True):
            counts[i][0] += int(np.count_nonzero(errors & (prediction == label)))
            counts[i][1] += wrong
    return [None if c is None else (c[0], c[1]) for c in counts]


def _share(counts: Sequence[tuple[int, int] | None]) -> float | None:
    found = [c for c in counts if c is not None]
    wrong = sum(w for _, w in found)
    return sum(r for r, _ in found) / wrong if found and wrong else None


def _repeated_errors(
    layout: ExperimentLayout, trainings: Sequence[Mapping[str, Any]], truth: ReferenceTruth, folds: int
) -> dict[str, Any]:
    # Pseudo-label folder -> prediction folder compared with it -> the figures it counts for.
    pairs: dict[str, dict[str, list[tuple[str, ...]]]] = {}
    for training in trainings:
        model = ModelRef(training["strategy"], training["generation"], training["group"])
        for fold, labels in training["pseudo_labels"].items():
            pairs.setdefault(labels, {}).setdefault(model.predictions(fold), []).append(("student", model.key))
    for training in trainings:
        if training["strategy"] != "atso" or not training["group"].startswith("fold"):
            continue
        t = int(training["generation"])
        for k in range(folds):
            side = "own" if f"fold{k}" in training["pseudo_labels"] else "other"
            prediction = ModelRef("atso", t, training["group"]).predictions(f"fold{k}")
            pairs.setdefault(pseudo_label_folder("atso", t, k), {}).setdefault(prediction, []).append(
                ("atso", str(t), side)
            )
    found: dict[tuple[str, ...], list[tuple[int, int] | None]] = {}
    for labels, compared in pairs.items():
        for keys, counts in zip(compared.values(), _repeated(layout, truth, labels, list(compared)), strict=True):
            for key in keys:
                found.setdefault(key, []).append(counts)
    students = {key[1]: _share(c) for key, c in found.items() if key[0] == "student" and None not in c}
    atso: dict[str, dict[str, float | None]] = {}
    for key, counts in found.items():
        if key[0] == "atso":
            atso.setdefault(key[1], {"own": None, "other": None})[key[2]] = _share(counts)
    return {"students": students, "atso": dict(sorted(atso.items(), key=lambda item: int(item[0])))}


def _voxel_errors(results: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    counts = {case: c for result in results for case, c in result["counts"].items()}
    if not counts:
        return None
    per_case = {case: {"tp": tp, "fp": n_p - tp, "fn": n_t - tp} for case, (tp, n_p, n_t) in counts.items()}
    tp, fp, fn = (sum(c[key] for c in per_case.values()) for key in ("tp", "fp", "fn"))
    return {
        "per_case": per_case,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "volume_ratio": (tp + fp) / (tp + fn) if tp + fn else None,
    }


def _pseudo_label_errors(evaluations: Mapping, strategies: Sequence[str], folds: int, generations: int) -> dict:
    out: dict[str, dict[str, Any]] = {}
    for strategy in strategies:
        for t in range(1, generations + 2):
            results = [evaluations.get(pseudo_label_folder(strategy, t, k)) for k in range(folds)]
            errors = _voxel_errors([r for r in results if r])
            if errors is not None:
                out.setdefault(strategy, {})[str(t)] = errors
    return out


def _uncertain_voxels(
    layout: ExperimentLayout, truth: ReferenceTruth, strategies: Sequence[str], folds: int, generations: int
) -> dict[str, Any]:
    """Per strategy and labelled generation, what the masks of uncertain voxels (``pseudo_label_confidence``)
    take from the students: the share of the labels' wrong voxels they mark, the share of their right
    organ voxels they mark, and the labels' DSC on the voxels left (what the students train on)."""
    out: dict[str, dict[str, Any]] = {}
    for strategy in strategies:
        for t in range(1, generations + 2):
            counts = _uncertain_counts(layout, truth, [pseudo_label_folder(strategy, t, k) for k in range(folds)])
            if counts is not None:
                out.setdefault(strategy, {})[str(t)] = {
                    "wrong_marked": counts["wrong_marked"] / counts["wrong"] if counts["wrong"] else None,
                    "right_marked": counts["right_marked"] / counts["right"] if counts["right"] else None,
                    "confident_dsc": (
                        2 * counts["kept_overlap"] / counts["kept_sizes"] if counts["kept_sizes"] else None
                    ),
                }
    return out


def _uncertain_counts(layout: ExperimentLayout, truth: ReferenceTruth, folders: Sequence[str]) -> dict[str, int] | None:
    """Voxel counts of the pseudo labels in ``folders`` that have a mask and a truth; ``None`` if none has."""
    import numpy as np

    names = ("wrong", "wrong_marked", "right", "right_marked", "kept_overlap", "kept_sizes")
    counts, found = dict.fromkeys(names, 0), False
    for folder in folders:
        for case_id in layout.mask_ids(folder):
            marks = layout.case_file(folder, case_id, "uncertain")
            if case_id not in truth.files or not marks.is_file():
                continue
            (label, marked), true_label = truth.read([layout.case_file(folder, case_id), marks], case_id)
            marked, wrong, found = marked != 0, label != true_label, True
            right = ~wrong & (true_label != 0)
            kept = ~marked
            for name, voxels in (
                ("wrong", wrong),
                ("wrong_marked", wrong & marked),
                ("right", right),
                ("right_marked", right & marked),
                ("kept_overlap", kept & right),
                ("kept_sizes", kept & (label != 0)),
                ("kept_sizes", kept & (true_label != 0)),
            ):
                counts[name] += int(np.count_nonzero(voxels))
    return counts if found else None


def measure_lazy_learning(
    layout: ExperimentLayout,
    trainings: Sequence[Mapping[str, Any]],
    evaluations: Mapping[str, Mapping[str, Any]],
    report: Mapping[str, Any],
    truth: ReferenceTruth | None = None,
) -> dict[str, Any]:
    """The lazy-learning figures of an experiment (see the module docstring).

    Args:
        layout: the experiment folder (its prediction and pseudo-label files are read).
        trainings: :func:`student_trainings` of its plan.
        evaluations: evaluated folder -> the journal's result of its evaluation (``dsc``, ``counts``).
        report: its report (strategies that ran, ``folds``, ``generations``).
        truth: the cases' true labels, for ``repeated_errors`` (``None``: that figure is left out).

    Returns:
        ``{"students": [...], "atso_own_minus_other": {t: ...}, "pseudo_labels": {strategy: {t: ...}}}``
        and ``repeated_errors`` with ``truth`` (and ``uncertain_voxels`` where the report's
        ``pseudo_label_confidence`` is set); ``pseudo_labels`` generation ``t`` is the set
        generation ``t`` trains on (made by ``t - 1``).
    """
    strategies = [s for s in SEMI_SUPERVISED if s in report["strategies"]]
    folds, generations = report["folds"], report["generations"]
    figures = {
        "students": _students(layout, trainings, evaluations),
        "atso_own_minus_other": _own_minus_other(evaluations, trainings, folds) if "atso" in strategies else {},
        "pseudo_labels": _pseudo_label_errors(evaluations, strategies, folds, generations),
    }
    if truth is not None:
        figures["repeated_errors"] = _repeated_errors(layout, trainings, truth, folds)
        if report.get("pseudo_label_confidence") is not None:
            figures["uncertain_voxels"] = _uncertain_voxels(layout, truth, strategies, folds, generations)
    return figures


def has_lazy_learning(report: Mapping[str, Any]) -> bool:
    """Whether a report holds every lazy-learning figure its settings call for (older reports lack some:
    ``repeated_errors``, or with ``pseudo_label_confidence`` the ``uncertain_voxels``)."""
    figures = report.get("lazy_learning", {})
    return "repeated_errors" in figures and (
        report.get("pseudo_label_confidence") is None or "uncertain_voxels" in figures
    )


def lazy_learning_rows(figures: Mapping[str, Any], metric: str = "mean") -> list[dict[str, Any]]:
    """One row per student: how closely it fits its training pseudo labels and how good both are.

    Returns:
        ``{"Student", "fit to its labels", "student vs truth", "its labels vs truth"}`` (fractions), and
        ``"repeats its labels' errors"`` where the figures have ``repeated_errors``.
    """
    repeated = figures.get("repeated_errors", {}).get("students", {})
    return [
        {
            "Student": row["model"],
            "fit to its labels": result_dsc(row["fit"], metric),
            "student vs truth": result_dsc(row["truth"], metric),
            "its labels vs truth": result_dsc(row["labels"], metric),
            **({"repeats its labels' errors": repeated.get(row["model"])} if repeated else {}),
        }
        for row in figures.get("students", [])
    ]


def pseudo_label_rows(figures: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per pseudo-label set: precision, recall and volume ratio of its voxels against the truth."""
    rows = []
    for strategy, by_generation in figures.get("pseudo_labels", {}).items():
        for t, errors in by_generation.items():
            rows.append(
                {
                    "Pseudo labels": f"{strategy} for G{t}",
                    "precision": errors["precision"],
                    "recall": errors["recall"],
                    "volume / truth": "—" if errors["volume_ratio"] is None else f"{errors['volume_ratio']:.2f}x",
                }
            )
    return rows
