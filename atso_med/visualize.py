"""Pictures of CT volumes with their labels: case previews and truth / prediction overlays.

matplotlib is imported inside the functions that draw (with the Agg backend), so that importing
this module costs nothing and works without a display.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from atso_med.errors import ConfigError
from atso_med.files import atomic_write
from atso_med.transforms.intensity import HU_WINDOW

#: Size of a case preview in pixels (width, height) at the default dpi.
PREVIEW_SIZE = (1200, 450)
_PREVIEW_DPI = 100

_TRUTH = np.array([1.0, 0.0, 0.0])
_PRED = np.array([0.0, 1.0, 0.0])
_BOTH = np.array([1.0, 1.0, 0.0])


def window_image(image2d: np.ndarray, window: tuple[float, float] = HU_WINDOW) -> np.ndarray:
    """Map HU to [0, 1] through a display window.

    Args:
        image2d: HU values (any shape).
        window: (lowest, highest) HU shown as black and white.

    Returns:
        float32 array of the same shape in [0, 1].

    Raises:
        ConfigError: the window is empty.
    """
    lo, hi = float(window[0]), float(window[1])
    if not hi > lo:
        raise ConfigError(f"display window must have high > low, got {window}")
    return np.clip((np.asarray(image2d, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)


def overlay_rgb(
    image2d: np.ndarray,
    truth2d: np.ndarray | None,
    pred2d: np.ndarray | None = None,
    window: tuple[float, float] = HU_WINDOW,
    alpha: float = 0.45,
) -> np.ndarray:
    """Grey-scale slice with masks blended in: truth red, prediction green, overlap yellow.

    Args:
        image2d: 2D HU slice.
        truth2d: reference mask of the same shape (non-zero = organ), or None.
        pred2d: predicted mask of the same shape, or None.
        window: display window in HU.
        alpha: opacity of the mask colours.

    Returns:
        uint8 RGB array of shape ``image2d.shape + (3,)``.

    Raises:
        ConfigError: the arrays are not 2D of one shape, or ``alpha`` is outside [0, 1].
    """
    image2d = np.asarray(image2d)
    if image2d.ndim != 2:
        raise ConfigError(f"overlay_rgb needs a 2D slice, got shape {image2d.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1], got {alpha}")
    masks = []
    for name, given in (("truth", truth2d), ("prediction", pred2d)):
        if given is None:
            masks.append(np.zeros(image2d.shape, dtype=bool))
            continue
        mask = np.asarray(given)
        if mask.shape != image2d.shape:
            raise ConfigError(f"{name} mask shape {mask.shape} differs from the image's {image2d.shape}")
        masks.append(mask != 0)
    truth, pred = masks
    grey = window_image(image2d, window)
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    colour = np.zeros_like(rgb)
    colour[truth & ~pred] = _TRUTH
    colour[pred & ~truth] = _PRED
    colour[truth & pred] = _BOTH
    any_mask = (truth | pred)[:, :, None]
    rgb = np.where(any_mask, (1.0 - alpha) * rgb + alpha * colour, rgb)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def _reorient_lps(image: np.ndarray, label: np.ndarray | None, affine: np.ndarray | None):
    """Reorder axes to (left, posterior, superior) and return the spacing of that order."""
    if affine is None:
        return image, label, (1.0, 1.0, 1.0)
    import nibabel as nib

    affine = np.asarray(affine, dtype=np.float64)
    current = nib.orientations.io_orientation(affine)
    target = nib.orientations.axcodes2ornt(("L", "P", "S"))
    transform = nib.orientations.ornt_transform(current, target)
    image = nib.orientations.apply_orientation(image, transform)
    if label is not None:
        label = nib.orientations.apply_orientation(label, transform)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    order = [int(axis) for axis in transform[:, 0]]
    # transform[i] sends input axis i to output axis transform[i, 0].
    new_spacing = [0.0, 0.0, 0.0]
    for axis_in, axis_out in enumerate(order):
        new_spacing[axis_out] = float(spacing[axis_in])
    return image, label, tuple(new_spacing)


def save_case_preview(
    image: np.ndarray,
    label: np.ndarray | None,
    affine: np.ndarray | None,
    path: str | os.PathLike,
    window: tuple[float, float] = HU_WINDOW,
    title: str | None = None,
) -> Path:
    """Save a PNG with the axial, coronal and sagittal planes through a case, label overlaid.

    The planes cross at the centre of the label's bounding box (the volume's centre when the
    label is empty). With an affine the volume is shown in radiological convention (patient's
    right on the left of axial and coronal views, anterior up, superior up) and with true voxel
    aspect; without one, array axis 2 is taken as axial and voxels as cubes. The PNG is
    :data:`PREVIEW_SIZE` pixels and written atomically.

    Args:
        image: 3D HU volume.
        label: mask of the same shape (red overlay), or None.
        affine: 4x4 voxel-to-RAS affine, or None.
        path: PNG to write.
        window: display window in HU.
        title: figure title.

    Returns:
        The path written.

    Raises:
        ConfigError: the arrays are not 3D of one shape.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ConfigError(f"save_case_preview needs a 3D image, got shape {image.shape}")
    if label is not None:
        label = np.asarray(label)
        if label.shape != image.shape:
            raise ConfigError(f"label shape {label.shape} differs from the image's {image.shape}")
    image, label, spacing = _reorient_lps(image, label, affine)
    if label is not None and np.any(label):
        nonzero = np.nonzero(label)
        centre = [int(round((idx.min() + idx.max()) / 2)) for idx in nonzero]
    else:
        centre = [n // 2 for n in image.shape]
    i, j, k = centre

    def cut(volume, view):
        if volume is None:
            return None
        if view == "axial":  # rows: anterior -> posterior, columns: patient right -> left
            return volume[:, :, k].T
        if view == "coronal":  # rows: superior -> inferior, columns: right -> left
            return volume[:, j, :].T[::-1]
        return volume[i, :, :].T[::-1]  # sagittal; rows: superior -> inferior, columns: anterior -> posterior

    aspects = {
        "axial": spacing[1] / spacing[0],
        "coronal": spacing[2] / spacing[0],
        "sagittal": spacing[2] / spacing[1],
    }
    names = {"axial": f"axial k={k}", "coronal": f"coronal j={j}", "sagittal": f"sagittal i={i}"}

    # An explicit Agg canvas on a bare Figure: no display, and pyplot's global state untouched.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = PREVIEW_SIZE
    fig = Figure(figsize=(width / _PREVIEW_DPI, height / _PREVIEW_DPI), dpi=_PREVIEW_DPI, facecolor="black")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    for ax, view in zip(axes, ("axial", "coronal", "sagittal"), strict=True):
        ax.imshow(
            overlay_rgb(cut(image, view), cut(label, view), window=window),
            aspect=aspects[view],
            interpolation="nearest",
        )
        ax.set_title(names[view], color="white", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, color="white", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.86 if title else 0.92, wspace=0.04)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=_PREVIEW_DPI, facecolor=fig.get_facecolor())
    return Path(path)
