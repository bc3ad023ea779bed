"""Rendering one phantom case: acquisition geometry, anatomy, intensities, partial volume and noise."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from atso_med.data.phantom.anatomy import draw_anatomy, paint_anatomy
from atso_med.data.phantom.geometry import Canvas, Grid, smooth_noise
from atso_med.data.phantom.parameters import (
    BODY_FILL,
    BODY_WIDTH,
    MIN_SHAPE,
    ORGAN_CLASSES,
    PHASES,
    TISSUES,
    PhantomCase,
    PhantomConfig,
    case_rng,
)

_T = TISSUES  # short for the many lookups below


def make_phantom_case(
    rng: np.random.Generator | None, config: PhantomConfig, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one case.

    Args:
        rng: the case's random stream; ``None`` uses :func:`case_rng` of the config's seed.
        config: what to generate.
        index: case index (only used when ``rng`` is None).

    Returns:
        ``(image, label, affine)``: int16 HU volume, uint8 label map of the configuration's
        ``labels`` (same shape; the pancreas mask by default), and the 4x4 voxel-to-RAS affine
        they share.
    """
    case = render_phantom_case(rng, config, index)
    return case.image, case.label, case.affine


def render_phantom_case(rng: np.random.Generator | None, config: PhantomConfig, index: int) -> PhantomCase:
    """Render one case with its tissue map and parameters (see :func:`make_phantom_case`).

    Args:
        rng: the case's random stream; ``None`` uses :func:`case_rng` of the config's seed.
        config: what to generate.
        index: case index.

    Returns:
        The case, with the tissue map and per-case parameters for inspection and tests.
    """
    if rng is None:
        rng = case_rng(config.seed, index, config.domain)
    preset = config.preset
    H, W, D = config.shape
    nominal = np.array(config.spacing, dtype=np.float64)

    # --- acquisition geometry -----------------------------------------------------------------
    spacing = nominal.copy()
    spacing[:2] *= preset["inplane_spacing_factor"]
    if config.vary_geometry:
        spacing[:2] *= rng.uniform(0.93, 1.07)
        spacing[2] *= float(rng.choice(preset["z_spacing_factors"]))
        depth = int(round(D * rng.uniform(0.75, 1.25)))
    else:
        spacing[2] *= preset["z_spacing_factors"][len(preset["z_spacing_factors"]) // 2]
        depth = D
    spacing = np.round(spacing, 4)
    depth = max(depth, MIN_SHAPE[2] // 2)
    shape = (H, W, depth)
    # The anatomy scale depends on the nominal (source) field of view only, so that the shifted
    # scanner sees the same anatomy at another resolution.
    scale = BODY_FILL * min(H * nominal[0], W * nominal[1]) / BODY_WIDTH
    habitus = rng.uniform(0.92, 1.08, 3)  # internal anatomy size per axis
    step = spacing / (scale * habitus)  # standard mm per voxel

    # --- anatomy parameters -------------------------------------------------------------------
    anat = draw_anatomy(rng, step)
    fov_half = np.array(shape) * step / 2.0
    offset_xy = rng.normal(0.0, 0.03, 2) * fov_half[:2] * 2
    zlo, zhi = anat["pancreas_z_range"]
    margin = 15.0
    lo, hi = zhi + margin - fov_half[2], zlo - margin + fov_half[2]
    zc = rng.uniform(lo, hi) if hi > lo else 0.5 * (zlo + zhi)
    grid = Grid(shape, step, np.array([-offset_xy[0], -offset_xy[1], zc]))
    canvas = Canvas(shape)

    # --- paint, back to front: later structures win -----------------------------------------
    pancreas_info = paint_anatomy(canvas, grid, rng, anat, preset["lesions"])

    tissue = canvas.tissue
    pancreas = (tissue == _T["pancreas"]) | (tissue == _T["lesion"])
    # Only the tissue map is read here, never the random stream: the label choice leaves the
    # image (drawn below) unchanged.
    label = pancreas.astype(np.uint8) if config.labels == "pancreas" else organ_label_map(tissue, grid.axes[0])

    # --- intensities, partial volume, noise -----------------------------------------------------
    phase = PHASES[preset["phase"]]
    names = list(TISSUES)
    means = np.array([phase[n][0] + rng.normal(0.0, phase[n][1]) for n in names], dtype=np.float32)
    amps = np.array([phase[n][2] for n in names], dtype=np.float32)
    texture = smooth_noise(rng, shape, 2.0) * np.float32(0.6) + smooth_noise(rng, shape, 6.0) * np.float32(0.8)
    clean = means[tissue] + amps[tissue] * texture + canvas.extra
    blurred = ndimage.gaussian_filter(clean, sigma=preset["psf_sigma_vox"], mode="nearest")
    noise_std = float(rng.uniform(*preset["noise_std_hu"])) * config.noise_scale
    frac = float(preset["noise_correlated_fraction"])
    white = rng.standard_normal(shape, dtype=np.float32)
    corr = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), preset["noise_correlation_vox"])
    corr /= max(float(corr.std()), 1e-6)
    noise = np.float32(noise_std) * (np.float32(math.sqrt(1 - frac**2)) * white + np.float32(frac) * corr)
    hu_offset = float(rng.uniform(*preset["hu_offset"]))
    image = np.clip(np.rint(blurred + noise + np.float32(hu_offset)), -1024, 3071).astype(np.int16)

    affine = _affine(rng, spacing, shape)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    meta = {
        "index": int(index),
        "shape": list(shape),
        "spacing": [float(s) for s in spacing],
        "anatomy_scale": float(scale),
        "habitus": [float(h) for h in habitus],
        "phase": preset["phase"],
        "noise_std_hu": noise_std,
        "hu_offset": hu_offset,
        "pancreas_ml": float(pancreas.sum()) * voxel_ml,
        **pancreas_info,
    }
    return PhantomCase(image, label, affine, tissue, tuple(float(s) for s in spacing), meta)


def organ_label_map(tissue: np.ndarray, x_mm: np.ndarray) -> np.ndarray:
    """The ``"organs"`` label map of a tissue map: one class per organ (:data:`ORGAN_CLASSES`).

    A voxel holds one tissue (the structure painted last there, e.g. a vessel carving an organ),
    and the classes' tissue sets are disjoint, so each voxel gets exactly one class: that of its
    tissue, 0 for tissues of no class. Paired organs (the kidneys) split their tissues at the
    body's midline.

    Args:
        tissue: uint8 tissue map (:data:`TISSUES`), shape (H, W, D).
        x_mm: x coordinate of each index along axis 0 in the anatomy frame (mm, towards the
            patient's left; 0 on the midline), e.g. ``Grid.axes[0]``.

    Returns:
        uint8 class map of the same shape.
    """
    label = np.zeros(tissue.shape, dtype=np.uint8)
    left = (np.asarray(x_mm) > 0)[:, None, None]
    for value, organ in enumerate(ORGAN_CLASSES, start=1):
        mask = np.isin(tissue, [_T[name] for name in organ.tissues])
        if organ.side is not None:
            mask &= left if organ.side == "left" else ~left
        label[mask] = value
    return label


def _affine(rng: np.random.Generator, spacing: np.ndarray, shape) -> np.ndarray:
    """Voxel-to-RAS affine of a CT stored LPS-ordered: i to the left, j posterior, k superior."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    # A scanner-like origin: centred left-right, table height offset, table position along z.
    affine[0, 3] = round(spacing[0] * (shape[0] - 1) / 2.0 + rng.uniform(-5, 5), 2)
    affine[1, 3] = round(spacing[1] * (shape[1] - 1) / 2.0 + rng.uniform(-40, 10), 2)
    affine[2, 3] = round(-rng.uniform(250, 450), 2)
    return affine


def best_window_dice(
    image: np.ndarray,
    label: np.ndarray,
    mask: np.ndarray | None = None,
    lo: float = -200.0,
    hi: float = 400.0,
    step: float = 5.0,
) -> tuple[float, tuple[float, float]]:
    """Dice of the best single intensity window ``lo <= HU < hi`` as a segmentation of ``label``.

    Every window with both ends on the grid ``lo, lo + step, ..., hi`` is tried (from cumulative
    histograms, so all windows cost one pass over the data). A fair phantom keeps this low.

    Args:
        image: HU volume.
        label: reference mask (non-zero = organ).
        mask: voxels that may be predicted (e.g. the body); default all.
        lo: lowest window edge.
        hi: highest window edge.
        step: grid step in HU.

    Returns:
        ``(dice, (window_lo, window_hi))`` of the best window.
    """
    values = np.asarray(image, dtype=np.float32)
    truth = np.asarray(label) != 0
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)
        values, truth = values[keep], truth[keep]
    else:
        values, truth = values.ravel(), truth.ravel()
    edges = np.arange(lo, hi + 0.5 * step, step, dtype=np.float64)
    all_hist, _ = np.histogram(values, bins=edges)
    organ_hist, _ = np.histogram(values[truth], bins=edges)
    cum_all = np.concatenate([[0], np.cumsum(all_hist)])
    cum_organ = np.concatenate([[0], np.cumsum(organ_hist)])
    n_truth = int(truth.sum())
    predicted = cum_all[None, :] - cum_all[:, None]  # [a, b): edges[a] <= v < edges[b]
    hits = cum_organ[None, :] - cum_organ[:, None]
    dice = np.where(predicted > 0, 2.0 * hits / np.maximum(n_truth + predicted, 1), 0.0)
    dice[np.tril_indices_from(dice)] = 0.0
    a, b = np.unravel_index(int(np.argmax(dice)), dice.shape)
    return float(dice[a, b]), (float(edges[a]), float(edges[b]))
