"""The figures of an experiment's reports: the DSC-per-generation plot and the overlays of test cases.

* ``progress.png`` (:func:`plot_progress`): DSC per generation per strategy, reference and test,
  from the numbers :func:`atso_med.atso.reports.progress_curves` gives.
* ``overlays/<case_id>.png`` (:func:`draw_overlays`): test cases with truth (red), prediction
  (green) and overlap (yellow), one panel per model (:func:`overlay_figure`, also for notebooks).

matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atso_med.atso.layout import ExperimentLayout
from atso_med.files import atomic_write

if TYPE_CHECKING:
    from atso_med.data.dataset import Dataset

__all__ = ["draw_overlays", "overlay_figure", "plot_progress"]

#: One colour per strategy, in every plot.
_COLOURS = {
    "supervised": "#555555",
    "fully_supervised": "#000000",
    "self_learning": "#1f77b4",
    "stso": "#ff7f0e",
    "atso": "#2ca02c",
}


def _save_figure(figure: Any, path: Path) -> Path:
    with atomic_write(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return path


def plot_progress(curves: Mapping[str, Any], path: Path) -> Path:
    """``progress.png``: DSC per generation per strategy, on the reference set and on the test set.

    Args:
        curves: the numbers, as :func:`atso_med.atso.reports.progress_curves` gives them.
        path: the PNG file.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metric, T = curves["metric"], curves["generations"]
    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for ax, measure, title in (
        (axes[0], "reference", "reference set (@R, pseudo labels)"),
        (axes[1], "test", "test set (@E)"),
    ):
        for strategy, curve in curves["strategies"].items():
            values = curve[measure]
            xs = [t for t, v in enumerate(values) if v is not None]
            ax.plot(xs, [100 * values[t] for t in xs], marker="o", color=_COLOURS[strategy], label=curve["name"])
            if measure == "test" and curve["final"] is not None:
                ax.plot(
                    [T + 0.25],
                    [100 * curve["final"]],
                    marker="*",
                    markersize=11,
                    color=_COLOURS[strategy],
                    linestyle="none",
                )
        for strategy, style in (("supervised", ":"), ("fully_supervised", "--")):
            baseline = curves["baselines"][strategy]
            if measure == "test" and baseline["test"] is not None:
                ax.axhline(100 * baseline["test"], color=_COLOURS[strategy], linestyle=style, label=baseline["name"])
        ax.set_title(title)
        ax.set_xlabel("generation (star: final model)")
        ax.set_ylabel(f"DSC % ({'global' if metric == 'global' else 'mean'})")
        if curves.get("classes"):
            ax.set_ylabel(f"DSC % ({'global' if metric == 'global' else 'mean'}), mean over the classes")
        ax.set_xticks(range(T + 1))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if curves.get("classes"):
        figure.suptitle(f"{len(curves['classes'])} classes: {', '.join(curves['classes'])}", fontsize=10)
    figure.tight_layout()
    return _save_figure(figure, path)


def _overlay_slice(truth: np.ndarray, masks: Sequence[np.ndarray]) -> int:
    """The axial index :func:`overlay_figure` shows (canonical arrays)."""
    truth_area = truth.sum(axis=(0, 1)).astype(np.int64)
    if masks:
        areas = np.array([m.sum(axis=(0, 1)) for m in masks], dtype=np.int64)
        predicting = (areas > 0).sum(axis=0)
        # Slices of the organ first (false positives alone say nothing of the organ), then where most
        # models predict (a weak model may predict nothing where the others agree), then the largest
        # smallest prediction (one voxel is invisible in a panel), then the largest truth.
        shown = predicting * (truth_area > 0)
        if not shown.any():
            shown = predicting
        if shown.any():
            smallest = np.where(areas > 0, areas, areas.max() + 1).min(axis=0)
            score = np.where(shown == shown.max(), smallest * (truth_area.max() + 1) + truth_area, -1)
            return int(np.argmax(score))
    return int(np.argmax(truth_area)) if truth.any() else truth.shape[2] // 2


def overlay_figure(image: Any, truth: np.ndarray, predictions: Sequence[tuple[str, np.ndarray]], title: str) -> Any:
    """An axial slice where the models predict something: truth red, each prediction green, overlap yellow.

    Among the organ's slices (all slices where no model predicts on the organ's), those where the
    most models predict something (every model, where such a slice exists); of these the one whose
    smallest prediction is largest, then the one with the largest truth. Where no model predicts
    anything, the truth's largest cross-section.

    Args:
        image: the case's :class:`~atso_med.data.volume.Volume` (HU, with its affine).
        truth: the truth mask on the image's grid.
        predictions: ``(title, mask)`` pairs on the image's grid, one panel each; the panel title
            gets the mask's DSC.
        title: the figure's title (the slice is added).

    Returns:
        A matplotlib ``Figure`` (Agg canvas; no display needed), in radiological view.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from atso_med.data.readers import reorient_to_canonical
    from atso_med.data.volume import Volume
    from atso_med.metrics.dice import dice_score
    from atso_med.visualize import overlay_rgb

    def canonical(array: np.ndarray) -> np.ndarray:
        return reorient_to_canonical(Volume(array, image.affine))[0].array

    image_c, truth_c = canonical(image.array), canonical(np.asarray(truth != 0, dtype=np.uint8))
    masks_c = [canonical(np.asarray(prediction != 0, dtype=np.uint8)) for _, prediction in predictions]
    k = _overlay_slice(truth_c, masks_c)

    def axial(volume: np.ndarray) -> np.ndarray:
        # canonical (RAS) slice in radiological view: anterior up, the patient's right on the left
        return np.rot90(volume[:, :, k])[:, ::-1]

    figure = Figure(figsize=(2.6 * max(1, len(predictions)), 3.0), facecolor="black")
    FigureCanvasAgg(figure)
    axes = np.atleast_1d(figure.subplots(1, max(1, len(predictions))))
    # With no prediction there is still one (empty) panel, so axes may outnumber predictions.
    for ax, (name, prediction), mask_c in zip(axes, predictions, masks_c, strict=False):
        mask = np.asarray(prediction != 0)
        rgb = overlay_rgb(axial(image_c), axial(truth_c), axial(mask_c))
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(f"{name}\nDSC {100 * dice_score(mask, truth != 0):.1f}%", color="white", fontsize=8)
        ax.axis("off")
    figure.suptitle(f"{title}, axial slice {k}: truth red, prediction green, overlap yellow", color="white", fontsize=9)
    figure.tight_layout(rect=(0, 0, 1, 0.88))
    return figure


def draw_overlays(
    layout: ExperimentLayout,
    dataset: Dataset,
    case_ids: Sequence[str],
    models: Sequence[tuple[str, str]],
    foreground: Sequence[int] | None,
    out_dir: Path,
) -> list[Path]:
    """One PNG per case, by :func:`overlay_figure`, with a panel per model that predicted it.

    Args:
        layout: the experiment folder.
        dataset: its data set (images and truth labels).
        case_ids: the cases drawn (each with a label).
        models: ``(title, prediction folder)`` pairs, one panel each where the case's mask exists.
        foreground: label values that count as organ in the truth (``None``: every non-zero value).
        out_dir: where ``<case_id>.png`` go.

    Returns:
        The PNG files written (a case no model predicted has none).
    """
    from atso_med.data.labels import load_label_mask
    from atso_med.data.readers import load_image, load_label

    written = []
    for case_id in case_ids:
        case = dataset.case(case_id)
        volume = load_image(case.image, series_uid=case.series_uid)
        truth = load_label_mask(case.label, volume, foreground)
        panels = [
            (title, load_label(layout.case_file(folder, case_id), volume) != 0)
            for title, folder in models
            if layout.case_file(folder, case_id).is_file()
        ]
        if panels:
            written.append(_save_figure(overlay_figure(volume, truth, panels, case_id), out_dir / f"{case_id}.png"))
    return written
