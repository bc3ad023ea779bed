"""A synthetic abdominal CT phantom: the built-in stand-in for NIH Pancreas-CT.

Each case is a contrast-enhanced abdominal CT in Hounsfield units with a pancreas label. The
anatomy is built from analytic shapes and tubes in an "adult millimetre" frame (x towards the
patient's left, y posterior, z superior, origin at the body centre at the level of the pancreatic
neck), scaled so that the body fills about 80 % of the field of view, and rendered on the voxel
grid of the case:

* air, a body outline with subcutaneous fat, an abdominal muscle wall and visceral fat;
* liver, spleen, kidneys (cortex, medulla, sinus fat), gallbladder, lung bases and heart;
* stomach, duodenum, small-bowel loops and colon (enhancing walls, fluid, collapsed loops,
  stool and gas pockets);
* aorta, IVC, portal / superior mesenteric / splenic / renal / hepatic vessels, celiac branches;
* vertebrae (cortical shell, cancellous core, discs, posterior elements, canal), ribs, psoas and
  paraspinal muscles;
* the target: an elongated, curved, lobulated pancreas whose length, thickness, curvature, tail
  height and position vary per case, with the splenic vein in a groove on its back, the
  duodenum wrapped around its head and jejunal loops under its body, all of similar density.

The clean HU map is blurred (partial volume) and correlated Gaussian noise is added. The
``"shifted"`` domain is another "scanner": arterial phase, noisier, a global HU offset, another
resolution, and hypodense lesions inside the pancreas (labeled pancreas, as MSD merges tumour into
pancreas for evaluation).

Every case comes from its own random stream, ``numpy.random.default_rng([seed, domain number, index])``,
so that case ``k`` is the same whatever the number of cases asked for.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

from atso_med.data.nifti import save_nifti
from atso_med.files import write_text_atomic
from atso_med.errors import ConfigError

#: Bumped whenever the generator's output changes for the same configuration.
PHANTOM_VERSION = 1

DOMAINS = ("source", "shifted")

#: Tissue classes of the debug map returned by :func:`render_phantom_case`.
TISSUES: dict[str, int] = {
    "air": 0,
    "fat": 1,
    "muscle": 2,
    "liver": 3,
    "spleen": 4,
    "kidney_cortex": 5,
    "kidney_medulla": 6,
    "artery": 7,
    "vein": 8,
    "ivc": 9,
    "bowel_wall": 10,
    "bowel_fluid": 11,
    "bowel_gas": 12,
    "bowel_collapsed": 13,
    "stool": 14,
    "cortical_bone": 15,
    "cancellous_bone": 16,
    "disc": 17,
    "csf": 18,
    "lung": 19,
    "heart": 20,
    "gallbladder": 21,
    "pancreas": 22,
    "lesion": 23,
}
_T = TISSUES
_N_TISSUES = len(TISSUES)

# Per-phase intensity model: tissue -> (mean HU, per-case s.d. of the mean, texture amplitude HU).
_PORTAL_VENOUS: dict[str, tuple[float, float, float]] = {
    "air": (-1000.0, 0.0, 0.0),
    "fat": (-100.0, 8.0, 6.0),
    "muscle": (55.0, 5.0, 5.0),
    "liver": (110.0, 10.0, 5.0),
    "spleen": (115.0, 10.0, 6.0),
    "kidney_cortex": (175.0, 15.0, 6.0),
    "kidney_medulla": (150.0, 15.0, 6.0),
    "artery": (165.0, 15.0, 3.0),
    "vein": (170.0, 15.0, 3.0),
    "ivc": (140.0, 20.0, 8.0),
    "bowel_wall": (80.0, 10.0, 10.0),
    "bowel_fluid": (15.0, 8.0, 4.0),
    "bowel_gas": (-985.0, 10.0, 10.0),
    "bowel_collapsed": (75.0, 10.0, 10.0),
    "stool": (-60.0, 30.0, 90.0),
    "cortical_bone": (900.0, 80.0, 60.0),
    "cancellous_bone": (240.0, 30.0, 25.0),
    "disc": (90.0, 10.0, 5.0),
    "csf": (20.0, 5.0, 3.0),
    "lung": (-850.0, 30.0, 30.0),
    "heart": (150.0, 15.0, 8.0),
    "gallbladder": (10.0, 5.0, 2.0),
    "pancreas": (105.0, 10.0, 8.0),
    "lesion": (20.0, 0.0, 4.0),
}
# Arterial phase: arteries and kidney cortex bright, veins, liver and pancreas dimmer.
_ARTERIAL: dict[str, tuple[float, float, float]] = {
    **_PORTAL_VENOUS,
    "liver": (75.0, 8.0, 6.0),
    "spleen": (120.0, 12.0, 25.0),
    "kidney_cortex": (220.0, 20.0, 8.0),
    "kidney_medulla": (90.0, 10.0, 8.0),
    "artery": (300.0, 35.0, 4.0),
    "vein": (110.0, 15.0, 6.0),
    "ivc": (70.0, 10.0, 10.0),
    "bowel_wall": (85.0, 10.0, 12.0),
    "heart": (220.0, 25.0, 10.0),
    "pancreas": (80.0, 10.0, 8.0),
}
_PHASES = {"portal_venous": _PORTAL_VENOUS, "arterial": _ARTERIAL}

# Scanner presets; copied into the resolved configuration written to dataset.json.
_DOMAIN_PRESETS: dict[str, dict[str, Any]] = {
    "source": {
        "phase": "portal_venous",
        "noise_std_hu": [8.0, 14.0],
        "noise_correlated_fraction": 0.5,
        "noise_correlation_vox": 0.8,
        "psf_sigma_vox": [0.5, 0.5, 0.45],
        "hu_offset": [0.0, 0.0],
        "inplane_spacing_factor": 1.0,
        "z_spacing_factors": [0.8, 1.0, 1.2],
        "lesions": False,
    },
    "shifted": {
        "phase": "arterial",
        "noise_std_hu": [20.0, 28.0],
        "noise_correlated_fraction": 0.75,
        "noise_correlation_vox": 1.3,
        "psf_sigma_vox": [0.75, 0.75, 0.6],
        "hu_offset": [10.0, 20.0],
        "inplane_spacing_factor": 1.25,
        "z_spacing_factors": [0.5, 0.6, 0.8],
        "lesions": True,
    },
}

# Standard adult body: half-axes of the abdominal cavity in mm; the body adds wall and fat.
_CAVITY_A, _CAVITY_B = 130.0, 95.0
_BODY_WIDTH = 320.0
_BODY_FILL = 0.8
_VERTEBRA_PERIOD = 35.0
_MIN_SHAPE = (32, 32, 16)

_IN_PROGRESS = ".phantom-in-progress.json"
_DATASET_FILE = "dataset.json"


@dataclass
class PhantomConfig:
    """What to generate.

    Attributes:
        cases: number of cases.
        seed: base seed; case ``k`` depends only on ``(seed, domain, k)``.
        shape: nominal array shape (H, W, D); axis 2 is superior-inferior. With
            ``vary_geometry`` the slice count of each case is D within +-25 %.
        spacing: nominal voxel size in mm (x, y, z) of the source scanner. The anatomy is scaled
            so that the body fills about 80 % of the nominal field of view ``shape[:2] *
            spacing[:2]`` (an adult at 512 x 512 x 0.8 mm, a small body at the default 128 x 128 x
            1.5 mm), so the in-plane spacing sets the physical size while the z spacing also sets
            the slice resolution. Per case the in-plane spacing varies +-7 % and the z spacing is
            picked from a small set; the shifted scanner sees the same anatomy at another
            resolution.
        domain: ``"source"`` (portal-venous phase) or ``"shifted"`` (another scanner).
        vary_geometry: vary slice count and spacing per case.
        noise_scale: multiplies the scanner's noise level (0 gives a noise-free phantom).
        lesions: put hypodense lesions in the pancreas; ``None`` lets the domain decide
            (shifted only).
    """

    cases: int = 20
    seed: int = 0
    shape: tuple[int, int, int] = (128, 128, 80)
    spacing: tuple[float, float, float] = (1.5, 1.5, 2.5)
    domain: str = "source"
    vary_geometry: bool = True
    noise_scale: float = 1.0
    lesions: bool | None = None

    def __post_init__(self) -> None:
        self.shape = tuple(int(n) for n in self.shape)  # type: ignore[assignment]
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Check every field.

        Raises:
            ConfigError: a value is out of range or unknown.
        """
        if int(self.cases) < 1:
            raise ConfigError(f"phantom cases must be >= 1, got {self.cases}")
        if len(self.shape) != 3 or any(n < m for n, m in zip(self.shape, _MIN_SHAPE)):
            raise ConfigError(f"phantom shape must be 3 sizes of at least {_MIN_SHAPE}, got {self.shape}")
        if len(self.spacing) != 3 or not all(math.isfinite(s) and 0.1 <= s <= 20 for s in self.spacing):
            raise ConfigError(f"phantom spacing must be 3 values in [0.1, 20] mm, got {self.spacing}")
        if self.domain not in DOMAINS:
            raise ConfigError(f"phantom domain must be one of {DOMAINS}, got {self.domain!r}")
        if not (math.isfinite(self.noise_scale) and 0 <= self.noise_scale <= 10):
            raise ConfigError(f"phantom noise_scale must be in [0, 10], got {self.noise_scale}")

    @property
    def preset(self) -> dict[str, Any]:
        """The scanner parameters of the domain, with ``lesions`` resolved."""
        preset = json.loads(json.dumps(_DOMAIN_PRESETS[self.domain]))
        if self.lesions is not None:
            preset["lesions"] = bool(self.lesions)
        return preset

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration, as stored under ``"phantom"`` in dataset.json.

        Returns:
            A JSON-ready dict: the fields, the generator version and the scanner parameters.
        """
        data = asdict(self)
        data["shape"] = list(self.shape)
        data["spacing"] = list(self.spacing)
        data["lesions"] = self.preset["lesions"]
        data["version"] = PHANTOM_VERSION
        data["scanner"] = {k: v for k, v in self.preset.items() if k != "lesions"}
        return data


@dataclass
class PhantomCase:
    """One rendered case with its debug information.

    Attributes:
        image: HU volume, int16, shape (H, W, D_case).
        label: pancreas mask, uint8 (0 background, 1 pancreas incl. lesions).
        affine: 4x4 voxel-to-RAS matrix (LPS-ordered axes, as CT usually is).
        tissue: uint8 tissue class of every voxel (:data:`TISSUES`), before blur and noise.
        spacing: voxel size (x, y, z) in mm.
        meta: case parameters (noise level, anatomy scale, pancreas size, lesions...).
    """

    image: np.ndarray
    label: np.ndarray
    affine: np.ndarray
    tissue: np.ndarray
    spacing: tuple[float, float, float]
    meta: dict[str, Any] = field(default_factory=dict)


def case_rng(seed: int, index: int, domain: str = "source") -> np.random.Generator:
    """The independent random stream of one case.

    Args:
        seed: the data set's seed.
        index: case index.
        domain: the domain; another domain gives other patients.

    Returns:
        A generator that depends only on ``(seed, domain, index)``.
    """
    return np.random.default_rng([int(seed), DOMAINS.index(domain), int(index)])


# ---------------------------------------------------------------------------------------------
# Geometry helpers
# ---------------------------------------------------------------------------------------------

_ALL = (slice(None), slice(None), slice(None))


class _Grid:
    """Voxel grid of a case in the standard adult frame (mm; x left, y posterior, z superior)."""

    def __init__(self, shape: tuple[int, int, int], step: np.ndarray, centre: np.ndarray) -> None:
        self.shape = shape
        self.step = np.asarray(step, dtype=np.float64)
        self.axes = [
            ((np.arange(n) - (n - 1) / 2.0) * st + c).astype(np.float32)
            for n, st, c in zip(shape, self.step, centre)
        ]
        self.origin = np.array([a[0] for a in self.axes], dtype=np.float64)

    def box(self, lo, hi) -> tuple[slice, slice, slice] | None:
        """Index slices of the voxels whose centres may lie in ``[lo, hi]``; None when empty."""
        out = []
        for axis in range(3):
            i0 = int(math.floor((lo[axis] - self.origin[axis]) / self.step[axis]))
            i1 = int(math.ceil((hi[axis] - self.origin[axis]) / self.step[axis])) + 1
            i0, i1 = max(i0, 0), min(i1, self.shape[axis])
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return tuple(out)  # type: ignore[return-value]

    def coords(self, sl) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable coordinate vectors of a box."""
        return (
            self.axes[0][sl[0]][:, None, None],
            self.axes[1][sl[1]][None, :, None],
            self.axes[2][sl[2]][None, None, :],
        )


class _Canvas:
    """The tissue map being painted, plus a per-voxel HU adjustment (fat mixing, lesions...)."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.tissue = np.zeros(shape, dtype=np.uint8)
        self.extra = np.zeros(shape, dtype=np.float32)

    def paint(self, sl, mask: np.ndarray, tissue: int, extra: np.ndarray | float | None = None) -> None:
        """Set ``tissue`` where ``mask`` holds inside box ``sl``; later paint wins."""
        t = self.tissue[sl]
        e = self.extra[sl]
        mask = np.broadcast_to(mask, t.shape)
        t[mask] = tissue
        if extra is None:
            e[mask] = 0.0
        elif np.isscalar(extra):
            e[mask] = extra
        else:
            e[mask] = np.broadcast_to(extra, t.shape)[mask]


def _rotation(angles_deg) -> np.ndarray:
    """Rotation matrix for angles (about x, about y, about z) in degrees, applied x then y then z."""
    ax, ay, az = (math.radians(a) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _ellipsoid(grid: _Grid, centre, semi, angles=(0.0, 0.0, 0.0)):
    """Normalised local coordinates of an ellipsoid in its bounding box.

    Returns:
        ``(sl, (u, v, w))`` with u, v, w the voxel coordinates in the ellipsoid's frame divided by
        its semi-axes (inside where u^2 + v^2 + w^2 < 1), or None when the box misses the grid.
    """
    centre = np.asarray(centre, dtype=np.float64)
    semi = np.asarray(semi, dtype=np.float64)
    reach = float(semi.max())
    sl = grid.box(centre - reach, centre + reach)
    if sl is None:
        return None
    x, y, z = grid.coords(sl)
    dx, dy, dz = x - centre[0], y - centre[1], z - centre[2]
    rot = _rotation(angles)
    local = [
        (rot[0, k] * dx + rot[1, k] * dy + rot[2, k] * dz) / np.float32(semi[k]) for k in range(3)
    ]
    return sl, local


def _curve(ctrl, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A smooth curve through control points, resampled every ``step`` mm of arc length.

    Returns:
        ``(points (N, 3), t (N,), t_ctrl (K,))``: the points, their arc-length fraction in
        [0, 1], and the arc-length fraction of each control point.
    """
    ctrl = np.asarray(ctrl, dtype=np.float64)
    seg = np.maximum(np.linalg.norm(np.diff(ctrl, axis=0), axis=1), 1e-6)
    u = np.concatenate([[0.0], np.cumsum(seg)])
    if len(ctrl) == 2:
        fine_u = np.linspace(0.0, u[-1], 64)
        fine = ctrl[0] + (ctrl[1] - ctrl[0]) * (fine_u / u[-1])[:, None]
    else:
        fine_u = np.linspace(0.0, u[-1], max(64, int(4 * u[-1] / step)))
        fine = CubicSpline(u, ctrl, axis=0, bc_type="natural")(fine_u)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(fine, axis=0), axis=1))])
    n = max(2, int(arc[-1] / step) + 1)
    s = np.linspace(0.0, arc[-1], n)
    points = np.stack([np.interp(s, arc, fine[:, k]) for k in range(3)], axis=1)
    total = max(arc[-1], 1e-6)
    return points, s / total, np.interp(u, fine_u, arc) / total


@dataclass
class _Tube:
    """A tube along a curve; per-point radius and attributes."""

    points: np.ndarray
    radius: np.ndarray
    attrs: dict[str, np.ndarray] = field(default_factory=dict)


def _tube(ctrl, radii, step: float, **attrs: float) -> _Tube:
    """A tube through control points with radius interpolated between control radii."""
    points, t, t_ctrl = _curve(ctrl, step)
    radius = np.interp(t, t_ctrl, np.asarray(radii, dtype=np.float64))
    full = {k: np.full(len(points), v, dtype=np.float64) for k, v in attrs.items()}
    full["t"] = t
    return _Tube(points, radius, full)


def _tube_field(grid: _Grid, tubes: list[_Tube], metric=(1.0, 1.0, 1.0)):
    """Distance of every voxel near some tubes to the nearest centreline point.

    One Euclidean distance transform of the rasterised centrelines in the tubes' bounding box
    gives, for each voxel, the distance to and the index of its nearest centreline point, so that
    radius and attributes can be looked up per voxel without Python loops.

    Args:
        grid: the case grid.
        tubes: tubes, concatenated (each voxel belongs to its nearest centreline).
        metric: divisors of the coordinates before measuring distances, e.g. (1, 0.75, 1.2)
            gives cross-sections flattened front to back and taller in z.

    Returns:
        ``(sl, dist, nearest, table)`` or None when no centreline point is on the grid: ``dist``
        in mm (scaled by ``metric``), ``nearest`` the point index per voxel, and ``table`` the
        concatenated per-point arrays (``points``, ``radius`` and every attribute).
    """
    points = np.concatenate([tube.points for tube in tubes])
    radius = np.concatenate([tube.radius for tube in tubes])
    keys = sorted(set().union(*(tube.attrs for tube in tubes)))
    table = {
        k: np.concatenate([tube.attrs.get(k, np.zeros(len(tube.points))) for tube in tubes]) for k in keys
    }
    table["points"] = points
    table["radius"] = radius
    reach = float(radius.max()) * 1.6 + 2.0 * float(grid.step.max())
    sl = grid.box(points.min(axis=0) - reach, points.max(axis=0) + reach)
    if sl is None:
        return None
    box_shape = tuple(s.stop - s.start for s in sl)
    origin = np.array([grid.axes[k][sl[k].start] for k in range(3)], dtype=np.float64)
    vox = np.rint((points - origin) / grid.step).astype(np.int64)
    keep = np.all((vox >= 0) & (vox < np.array(box_shape)), axis=1)
    if not keep.any():
        return None
    seeds = np.full(box_shape, -1, dtype=np.int32)
    ids = np.nonzero(keep)[0].astype(np.int32)
    seeds[tuple(vox[keep].T)] = ids
    sampling = grid.step / np.asarray(metric, dtype=np.float64)
    dist, index = ndimage.distance_transform_edt(seeds < 0, sampling=sampling, return_indices=True)
    nearest = seeds[tuple(index)]
    return sl, dist.astype(np.float32), nearest, table


def _smooth_noise(rng: np.random.Generator, shape, cell: float, order: int = 1) -> np.ndarray:
    """Smooth random field of unit standard deviation with features about ``cell`` voxels wide."""
    coarse = tuple(max(2, int(math.ceil(n / cell)) + 1) for n in shape)
    grid = rng.standard_normal(coarse).astype(np.float32)
    field_ = ndimage.zoom(grid, [n / c for n, c in zip(shape, coarse)], order=order, mode="nearest")
    field_ = field_[: shape[0], : shape[1], : shape[2]]
    if field_.shape != tuple(shape):  # zoom rounds sizes; pad the rare short axis
        field_ = np.pad(field_, [(0, n - m) for n, m in zip(shape, field_.shape)], mode="edge")
    field_ -= field_.mean()
    return field_ / max(float(field_.std()), 1e-6)


def _random_walk(rng: np.random.Generator, lo, hi, n: int, step: float) -> np.ndarray:
    """Control points of a meandering path that stays inside the box [lo, hi]."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    p = lo + (hi - lo) * rng.uniform(0.15, 0.85, 3)
    d = rng.standard_normal(3)
    d /= np.linalg.norm(d)
    out = [p.copy()]
    for _ in range(n - 1):
        d = 0.55 * d + 0.8 * rng.standard_normal(3) / math.sqrt(3)
        d /= max(np.linalg.norm(d), 1e-6)
        q = p + step * d
        bounce = (q < lo) | (q > hi)
        d[bounce] *= -1  # reflect off the box so that the loop stays in its region
        p = np.clip(p + step * d, lo, hi)
        out.append(p.copy())
    return np.array(out)


# ---------------------------------------------------------------------------------------------
# The case
# ---------------------------------------------------------------------------------------------


def make_phantom_case(
    rng: np.random.Generator | None, config: PhantomConfig, index: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one case.

    Args:
        rng: the case's random stream; ``None`` uses :func:`case_rng` of the config's seed.
        config: what to generate.
        index: case index (only used when ``rng`` is None).

    Returns:
        ``(image, label, affine)``: int16 HU volume, uint8 pancreas mask (same shape), and the
        4x4 voxel-to-RAS affine they share.
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
    depth = max(depth, _MIN_SHAPE[2] // 2)
    shape = (H, W, depth)
    # The anatomy scale depends on the nominal (source) field of view only, so that the shifted
    # scanner sees the same anatomy at another resolution.
    scale = _BODY_FILL * min(H * nominal[0], W * nominal[1]) / _BODY_WIDTH
    habitus = rng.uniform(0.92, 1.08, 3)  # internal anatomy size per axis
    step = spacing / (scale * habitus)  # standard mm per voxel

    # --- anatomy parameters -------------------------------------------------------------------
    anat = _draw_anatomy(rng, step)
    fov_half = np.array(shape) * step / 2.0
    offset_xy = rng.normal(0.0, 0.03, 2) * fov_half[:2] * 2
    zlo, zhi = anat["pancreas_z_range"]
    margin = 15.0
    lo, hi = zhi + margin - fov_half[2], zlo - margin + fov_half[2]
    zc = rng.uniform(lo, hi) if hi > lo else 0.5 * (zlo + zhi)
    grid = _Grid(shape, step, np.array([-offset_xy[0], -offset_xy[1], zc]))
    canvas = _Canvas(shape)

    # --- paint, back to front: later structures win -----------------------------------------
    body = _paint_body(canvas, grid, anat)
    below = grid.axes[2][None, None, :] <= body["z_dia"][:, :, None]
    inside = (body["d_out"] < -1.0) & below  # abdominal cavity below the diaphragm
    gi_lower = [t for t in anat["gi"] if t.attrs["group"][0] == 0]
    gi_upper = [t for t in anat["gi"] if t.attrs["group"][0] == 1]
    _paint_gi(canvas, grid, rng, gi_lower, inside, anat)
    _paint_liver(canvas, grid, anat, inside)
    _paint_spleen(canvas, grid, anat, inside)
    _paint_kidneys(canvas, grid, anat, inside)
    _paint_gi(canvas, grid, rng, gi_upper, inside, anat)
    _paint_gallbladder(canvas, grid, anat, inside)
    pancreas_info = _paint_pancreas(canvas, grid, rng, anat, inside, preset["lesions"])
    _paint_thorax(canvas, grid, anat, body)
    _paint_vessels(canvas, grid, anat, body["d_out"] < 2.0)
    _paint_muscles(canvas, grid, anat, body["body"])
    _paint_spine(canvas, grid, anat)
    _paint_ribs(canvas, grid, anat, body)

    tissue = canvas.tissue
    label = ((tissue == _T["pancreas"]) | (tissue == _T["lesion"])).astype(np.uint8)

    # --- intensities, partial volume, noise -----------------------------------------------------
    phase = _PHASES[preset["phase"]]
    names = list(TISSUES)
    means = np.array([phase[n][0] + rng.normal(0.0, phase[n][1]) for n in names], dtype=np.float32)
    amps = np.array([phase[n][2] for n in names], dtype=np.float32)
    texture = _smooth_noise(rng, shape, 2.0) * np.float32(0.6) + _smooth_noise(rng, shape, 6.0) * np.float32(0.8)
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
        "pancreas_ml": float(label.sum()) * voxel_ml,
        **pancreas_info,
    }
    return PhantomCase(image, label, affine, tissue, tuple(float(s) for s in spacing), meta)


def _affine(rng: np.random.Generator, spacing: np.ndarray, shape) -> np.ndarray:
    """Voxel-to-RAS affine of a CT stored LPS-ordered: i to the left, j posterior, k superior."""
    affine = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0])
    # A scanner-like origin: centred left-right, table height offset, table position along z.
    affine[0, 3] = round(spacing[0] * (shape[0] - 1) / 2.0 + rng.uniform(-5, 5), 2)
    affine[1, 3] = round(spacing[1] * (shape[1] - 1) / 2.0 + rng.uniform(-40, 10), 2)
    affine[2, 3] = round(-rng.uniform(250, 450), 2)
    return affine


# ---------------------------------------------------------------------------------------------
# Anatomy parameters
# ---------------------------------------------------------------------------------------------


def _draw_anatomy(rng: np.random.Generator, step: np.ndarray) -> dict[str, Any]:
    """Draw every anatomical parameter of a case (positions in the standard adult frame)."""
    a: dict[str, Any] = {}
    fine = 0.5 * float(step.min())  # centreline sampling finer than a voxel
    a["fine"] = fine
    a["step"] = step
    # Body wall.
    a["fat"] = rng.uniform(6.0, 28.0)
    a["muscle"] = rng.uniform(7.0, 13.0)
    a["fourier"] = [(k, rng.normal(0.0, 0.015), rng.uniform(0, 2 * math.pi)) for k in (2, 3, 4)]
    # Diaphragm domes (right higher, over the liver).
    a["dome_r"] = rng.uniform(125.0, 150.0)
    a["dome_l"] = a["dome_r"] - rng.uniform(5.0, 25.0)
    # Spine and great vessels.
    a["y_vb"] = 52.0 + rng.normal(0.0, 3.0)
    a["x_spine"] = rng.normal(0.0, 2.0)
    a["vertebra_phase"] = rng.uniform(0.0, _VERTEBRA_PERIOD)
    a["r_aorta"] = rng.uniform(9.0, 12.5)
    a["y_aorta"] = a["y_vb"] - 15.0 - a["r_aorta"] - 2.0
    a["x_aorta"] = 12.0 + rng.normal(0.0, 2.0)
    a["r_ivc"] = rng.uniform(9.0, 12.0)

    # Pancreas centreline: uncinate, head, neck, body, tail (standard positions, then jitter).
    ctrl = np.array(
        [
            [-28.0, 20.0, -42.0],
            [-42.0, 8.0, -28.0],
            [-40.0, -6.0, -10.0],
            [-10.0, -16.0, 0.0],
            [22.0, -10.0, 6.0],
            [52.0, 2.0, 14.0],
            [78.0, 20.0, 22.0],
            [92.0, 34.0, 28.0],
        ]
    )
    radii = np.array([11.0, 17.0, 15.0, 9.5, 11.5, 11.5, 10.5, 7.5])
    length = rng.uniform(0.85, 1.2)
    ctrl[4:, 0] = ctrl[3, 0] + (ctrl[4:, 0] - ctrl[3, 0]) * length
    ctrl[5:, 2] += rng.uniform(-15.0, 25.0) * np.array([0.35, 0.7, 1.0])  # tail height
    bulge = rng.uniform(-10.0, 12.0)
    ctrl[3:6, 1] -= bulge * np.array([0.5, 1.0, 0.6])  # body arching forward over the spine
    ctrl[6:, 1] += rng.uniform(-10.0, 10.0)  # tail towards or away from the kidney
    ctrl[:3] += rng.normal(0.0, 4.0, (3, 3)) + np.array([rng.normal(0, 4), 0, rng.uniform(-8, 6)])
    ctrl += rng.normal(0.0, 3.0, ctrl.shape)
    ctrl += rng.normal(0.0, [6.0, 3.0, 6.0])  # whole organ
    thickness = rng.uniform(0.75, 1.3)
    radii = radii * thickness * rng.uniform(0.85, 1.15, len(radii))
    a["pancreas_ctrl"] = ctrl
    a["pancreas_radii"] = radii
    a["pancreas_lobulation"] = rng.uniform(0.08, 0.18)
    a["pancreas_fat"] = rng.uniform(0.0, 0.15)  # fatty infiltration, grows with age
    a["pancreas_z_range"] = (float(ctrl[:, 2].min() - radii.max()), float(ctrl[:, 2].max() + radii.max()))
    neck, head_lo, head_up, uncinate = ctrl[3], ctrl[1], ctrl[2], ctrl[0]
    # Portal confluence behind the neck.
    conf = neck + np.array([2.0, 0.75 * radii[3] + 6.0, -2.0])
    a["confluence"] = conf

    # Organs.
    a["liver"] = {
        "scale": rng.uniform(0.85, 1.15, 3),
        "shift": rng.normal(0.0, 5.0, 3),
        "left_lobe": rng.uniform(0.7, 1.2),
        "tilt": rng.normal(0.0, 6.0),
    }
    tail = ctrl[-1]
    a["spleen"] = {
        "centre": np.array([tail[0] + 12.0, tail[1] + 18.0, tail[2] + 28.0]) + rng.normal(0.0, 5.0, 3),
        "semi": np.array([22.0, 50.0, 48.0]) * rng.uniform(0.8, 1.2),
        "angle": rng.uniform(-45.0, -25.0),
    }
    a["spleen"]["centre"][0] = min(a["spleen"]["centre"][0], 112.0)
    a["kidneys"] = []
    for side, (x, z) in ((1, (72.0, -25.0)), (-1, (-70.0, -40.0))):
        a["kidneys"].append(
            {
                "side": side,
                "centre": np.array([x, a["y_vb"] + 3.0, z]) + rng.normal(0.0, [4.0, 3.0, 8.0]),
                "semi": np.array([24.0, 21.0, 52.0]) * rng.uniform(0.85, 1.15, 3),
                "angles": (rng.normal(0, 5), side * rng.uniform(-14, -4), side * rng.uniform(20, 35)),
            }
        )
    a["gallbladder"] = (
        {
            "centre": np.array([-50.0, -58.0, 5.0]) + rng.normal(0.0, 5.0, 3),
            "semi": np.array([14.0, 14.0, 30.0]) * rng.uniform(0.7, 1.2),
            "angles": (rng.uniform(20, 40), rng.normal(0, 10), 0.0),
        }
        if rng.random() < 0.8
        else None
    )

    # GI tract: group 0 (small bowel, colon) is painted before the solid organs, group 1
    # (stomach, duodenum) after them, so that it wraps the pancreas head.
    gi: list[_Tube] = []
    pylorus = head_up + np.array([-2.0, -28.0, 8.0])
    stomach_size = rng.uniform(0.75, 1.15)
    gi.append(
        _tube(
            [
                [62.0, 18.0, a["dome_l"] - 20.0],
                [62.0, -28.0, 62.0],
                [28.0, -56.0, 28.0],
                [pylorus[0] + 12.0, pylorus[1] - 6.0, pylorus[2] + 4.0],
                pylorus,
            ],
            np.array([34.0, 32.0, 22.0, 14.0, 10.0]) * stomach_size,
            fine,
            group=1,
            kind=3,
            wall=5.0,
            gas=rng.uniform(0.1, 0.4),
        )
    )
    duo_kind = float(rng.choice([0, 1, 1, 0]))
    djf = np.array([ctrl[4, 0] + 12.0, ctrl[4, 1] + 6.0, ctrl[4, 2] - 26.0])
    r_duo = rng.uniform(9.0, 13.0)
    gi.append(
        _tube(
            [
                pylorus,
                head_up + np.array([-26.0, -12.0, 6.0]),
                head_lo + np.array([-r_duo - 0.8 * radii[1] - 2.0, 2.0, 0.0]),
                uncinate + np.array([-28.0, 4.0, -14.0]),
                uncinate + np.array([0.0, 6.0, -r_duo - 0.9 * radii[0]]),
                [a["x_aorta"] - 10.0, a["y_aorta"] - a["r_aorta"] - r_duo + 2.0, uncinate[2] - r_duo - 10.0],
                [a["x_aorta"] + 22.0, a["y_aorta"] - 18.0, uncinate[2] - 8.0],
                djf,
            ],
            np.full(8, r_duo),
            fine,
            group=1,
            kind=duo_kind,
            wall=3.0,
            gas=rng.uniform(0.1, 0.4) if rng.random() < 0.3 else 0.0,
        )
    )
    # Jejunal loops right under the pancreatic body and tail, then more small bowel.
    regions = [
        ([djf[0] - 10.0, -60.0, ctrl[4:, 2].min() - 45.0], [100.0, 15.0, ctrl[4:, 2].min() - 5.0], 2),
        ([-10.0, -85.0, -130.0], [110.0, 20.0, -20.0], int(rng.integers(2, 4))),
        ([-110.0, -85.0, -240.0], [20.0, 30.0, -70.0], int(rng.integers(2, 4))),
        ([-80.0, -85.0, -220.0], [90.0, 10.0, -50.0], int(rng.integers(1, 3))),
    ]
    for lo, hi, count in regions:
        for _ in range(count):
            kind = float(rng.choice([0, 0, 1, 1, 1, 2]))  # fluid, collapsed, gas-filled
            r = rng.uniform(8.0, 12.0) if kind != 1 else rng.uniform(6.0, 9.0)
            walk = _random_walk(rng, lo, hi, int(rng.integers(6, 11)), 28.0)
            gi.append(
                _tube(walk, np.full(len(walk), r), fine, group=0, kind=kind if kind != 2 else 0,
                      wall=2.5, gas=rng.uniform(0.1, 0.6) if kind == 2 else 0.0)
            )
    colon = np.array(
        [
            [-95.0, -10.0, -215.0],
            [-105.0, 12.0, -130.0],
            [-100.0, 5.0, -55.0],
            [-85.0, -40.0, -28.0],
            [-40.0, -72.0, -45.0 + rng.normal(0, 15)],
            [0.0, -78.0, -65.0 + rng.normal(0, 20)],
            [50.0, -68.0, -40.0 + rng.normal(0, 15)],
            [100.0, 5.0, 30.0],
            [110.0, 35.0, -50.0],
            [105.0, 30.0, -150.0],
            [70.0, -20.0, -225.0],
        ]
    ) + rng.normal(0.0, 4.0, (11, 3))
    gi.append(
        _tube(colon, np.array([25, 20, 20, 18, 17, 17, 16, 15, 14, 14, 13]) * rng.uniform(0.85, 1.15),
              fine, group=0, kind=2, wall=2.5, gas=rng.uniform(0.1, 0.4))
    )
    a["gi"] = gi

    # Vessels: kind 0 artery, 1 vein (portal system, renal, hepatic, iliac), 2 IVC.
    xa, ya, ra = a["x_aorta"], a["y_aorta"], a["r_aorta"]
    xi, yi = -24.0 + rng.normal(0, 2), a["y_vb"] - 28.0
    pt = ctrl
    rv = rng.uniform(3.5, 5.0)
    # Splenic vein: along the back of the body and tail, partly sunk into a groove.
    sv_pts, sv_t, _ = _curve(pt[3:], fine)
    sv_r = np.interp(sv_t, np.linspace(0, 1, len(pt) - 3), radii[3:])
    sv = sv_pts + np.stack([np.zeros_like(sv_t), 0.75 * sv_r + 0.3 * rv, 0.15 * sv_r], axis=1)
    sv_ctrl = np.concatenate([[conf], sv[:: max(1, len(sv) // 6)][1:], [a["spleen"]["centre"] + [-15, -5, -15]]])
    hilum = np.array([-46.0, 8.0, 48.0]) + a["liver"]["shift"]
    kl, kr = a["kidneys"][0]["centre"], a["kidneys"][1]["centre"]
    spleen_hilum = a["spleen"]["centre"]
    artery, vein, ivc = 0, 1, 2

    def vessel(kind: int, radii_, *points) -> _Tube:
        return _tube(points, radii_, fine, kind=kind)

    vessels = [
        # Aorta down to its bifurcation, common iliac arteries.
        vessel(
            artery, [ra * 1.05, ra, ra * 0.95, ra * 0.85],
            [xa, ya, 260], [xa, ya, 60], [xa, ya, -60], [xa - 2, ya, -160],
        ),
        vessel(artery, [6.5, 6.0], [xa - 2, ya, -160], [xa + 35, ya + 8, -260]),
        vessel(artery, [6.5, 6.0], [xa - 2, ya, -160], [xa - 40, ya + 8, -260]),
        # IVC from the iliac confluence up through the liver into the heart.
        vessel(ivc, [a["r_ivc"]] * 4, [xi, yi, -165], [xi, yi, 60], [xi + 6, yi - 8, 120], [xi + 20, yi - 30, 170]),
        vessel(vein, [7.0, 6.5], [xi, yi, -165], [xi + 30, yi + 12, -260]),
        vessel(vein, [7.0, 6.5], [xi, yi, -165], [xi - 30, yi + 14, -260]),
        # Celiac trunk, common hepatic and splenic arteries (tortuous along the upper border).
        vessel(
            artery, [3.5, 3.5, 3.0, 2.8], [xa, ya - ra + 2, 28], [xa, -12, 32], [-30, -8, 32], hilum + [0, -4, -4]
        ),
        vessel(
            artery,
            [3.2] * 6,
            [xa, -12, 32],
            [pt[4, 0], pt[4, 1] + 4, pt[4, 2] + 1.1 * radii[4] + 6],
            [0.5 * (pt[4, 0] + pt[5, 0]), pt[5, 1] - 2, pt[5, 2] + 1.3 * radii[5] + 10],
            [pt[5, 0], pt[5, 1] + 8, pt[5, 2] + 1.2 * radii[5] + 4],
            [pt[6, 0], pt[6, 1] + 2, pt[6, 2] + 1.3 * radii[6] + 9],
            spleen_hilum + [-16, -8, -10],
        ),
        # SMA: leaves the aorta below the celiac trunk, runs down behind the neck.
        vessel(
            artery,
            [4.5, 4.5, 4.2, 3.8, 3.2],
            [xa, ya - ra + 2, 14],
            [xa, ya - 24, 6],
            [xa - 2, conf[1] - 2, -20],
            [xa - 6, -22, -110],
            [xa - 10, -30, -190],
        ),
        # SMV, portal vein and its branches into the liver, splenic vein.
        vessel(
            vein, [rv + 1.5, rv + 1.2, rv + 0.8, rv], conf, conf + [-2, -6, -25], [-12, -24, -110], [-16, -30, -190]
        ),
        vessel(vein, [rv + 2.0, rv + 2.0, rv + 1.5], conf, conf + [-16, 5, 20], hilum),
        vessel(vein, [rv + 0.8, rv, rv - 0.5], hilum, hilum + [-40, 4, 10], hilum + [-70, 10, 5]),
        vessel(vein, [rv + 0.5, rv, rv - 1.0], hilum, hilum + [30, -30, 18], hilum + [55, -45, 22]),
        vessel(vein, np.full(len(sv_ctrl), rv), *sv_ctrl),
        # Renal veins (the left one passes between the SMA and the aorta) and arteries.
        vessel(
            vein, [4.5] * 4, kl + [-20, -6, 0], [xa + 12, ya - ra - 4, -27], [xa - 8, ya - ra - 5, -28], [xi, yi, -29]
        ),
        vessel(vein, [4.5, 4.5], kr + [20, -6, 0], [xi - 6, yi + 4, -38]),
        vessel(artery, [3.0, 2.8], [xa, ya, -24], kl + [-18, -2, 4]),
        vessel(artery, [3.0, 3.0, 2.8], [xa, ya, -26], [xi + 2, yi + 12, -30], kr + [18, -2, 4]),
        # Hepatic veins draining into the IVC under the diaphragm.
        vessel(vein, [6.0, 4.5, 3.5], [xi + 4, yi - 4, 100], [-80, -10, 80], [-110, -20, 60]),
        vessel(vein, [5.5, 4.2, 3.2], [xi + 6, yi - 5, 102], [-35, -45, 92], [-40, -70, 80]),
        vessel(vein, [5.0, 4.0, 3.0], [xi + 8, yi - 6, 104], [15, -40, 95], [35, -60, 88]),
    ]
    a["vessels"] = vessels
    a["lesions"] = {
        "count": int(rng.integers(1, 4)),
        "t": rng.uniform(0.08, 0.92, 3),
        "size": rng.uniform(0.55, 1.0, 3),
        "hu": rng.uniform(10.0, 30.0, 3),
        "offset": rng.normal(0.0, 0.3, (3, 3)),
    }
    return a


# ---------------------------------------------------------------------------------------------
# Painters
# ---------------------------------------------------------------------------------------------


def _paint_body(canvas: _Canvas, grid: _Grid, anat: dict[str, Any]) -> dict[str, np.ndarray]:
    """Body outline: skin, subcutaneous fat, muscle wall, and the visceral fat of the cavity.

    Returns:
        ``d_out`` (signed radial distance in mm outside the cavity ellipse, per voxel), ``body``
        (mask), ``phi`` (angle from the posterior midline, per (x, y)) and ``z_dia`` (height of
        the diaphragm per (x, y)).
    """
    x, y, z = grid.coords(_ALL)
    x2, y2 = x[:, :, 0], y[:, :, 0]
    rho = np.sqrt((x2 / _CAVITY_A) ** 2 + (y2 / _CAVITY_B) ** 2)
    theta = np.arctan2(y2, x2)
    cos, sin = np.cos(theta), np.sin(theta)
    radius = 1.0 / np.sqrt((cos / _CAVITY_A) ** 2 + (sin / _CAVITY_B) ** 2)
    widen = 1.0 + 0.05 * np.tanh((z[0, 0, :] - 40.0) / 100.0)  # wider under the costal margin
    d_out = (radius[:, :, None] * (rho[:, :, None] - widen[None, None, :])).astype(np.float32)
    t_muscle = anat["muscle"] * (1.0 + 0.3 * cos**2)
    wobble = sum(c * np.cos(k * theta + p) for k, c, p in anat["fourier"])
    t_fat = np.clip(anat["fat"] * (1.0 - 0.3 * sin + 0.25 * cos**2) + 12.0 * wobble, 2.0, None)
    outer = (t_muscle + t_fat).astype(np.float32)[:, :, None]
    body = d_out < outer
    canvas.paint(_ALL, body, _T["fat"])
    skin = max(2.0, 1.1 * float(grid.step[:2].max()))  # at least a voxel, or it breaks up
    canvas.paint(_ALL, body & ((d_out <= t_muscle[:, :, None]) | (d_out > outer - skin)), _T["muscle"])
    canvas.paint(_ALL, d_out <= 0.0, _T["fat"])
    phi = np.arccos(np.clip(y2 / np.maximum(np.hypot(x2, y2), 1e-3), -1.0, 1.0))
    # Diaphragm: two domes, lower towards the periphery and far lower posteriorly (recesses).
    yd = y2 - 5.0
    z_dia = np.maximum(
        anat["dome_r"] - ((x2 + 55.0) ** 2 + yd**2) / 120.0,
        anat["dome_l"] - ((x2 - 60.0) ** 2 + yd**2) / 120.0,
    ) - 0.3 * np.clip(y2, 0.0, None)
    return {"d_out": d_out, "body": body, "phi": phi, "z_dia": z_dia.astype(np.float32)}


def _paint_liver(canvas: _Canvas, grid: _Grid, anat: dict[str, Any], inside: np.ndarray) -> None:
    """Liver: a right lobe and a left lobe reaching across the midline in front of the stomach."""
    p = anat["liver"]
    s, sh = p["scale"], p["shift"]
    lobes = [
        (np.array([-65.0, 0.0, 62.0]) + sh, np.array([72.0, 82.0, 82.0]) * s, (0.0, p["tilt"], 0.0)),
        (np.array([5.0, -45.0, 80.0]) + sh, np.array([58.0 * p["left_lobe"], 35.0, 38.0]) * s, (0.0, 0.0, -10.0)),
    ]
    for centre, semi, angles in lobes:
        found = _ellipsoid(grid, centre, semi, angles)
        if found is None:
            continue
        sl, (u, v, w) = found
        canvas.paint(sl, (u * u + v * v + w * w < 1.0) & inside[sl], _T["liver"])


def _paint_spleen(canvas: _Canvas, grid: _Grid, anat: dict[str, Any], inside: np.ndarray) -> None:
    """Spleen: a flattened ellipsoid along the left posterolateral wall, dented at the hilum."""
    p = anat["spleen"]
    found = _ellipsoid(grid, p["centre"], p["semi"], (0.0, 0.0, p["angle"]))
    if found is None:
        return
    sl, (u, v, w) = found
    r2 = u * u + v * v + w * w
    dent = ((u + 0.9) ** 2 + (v * 1.4) ** 2 + (w * 1.6) ** 2) < 0.35  # concave hilum
    canvas.paint(sl, (r2 < 1.0) & ~dent & inside[sl], _T["spleen"])


def _paint_kidneys(canvas: _Canvas, grid: _Grid, anat: dict[str, Any], inside: np.ndarray) -> None:
    """Kidneys with cortex, medulla and a sinus of fat opening anteromedially at the hilum."""
    for k in anat["kidneys"]:
        found = _ellipsoid(grid, k["centre"], k["semi"], k["angles"])
        if found is None:
            continue
        sl, (u, v, w) = found
        r = np.sqrt(u * u + v * v + w * w)
        kidney = (r < 1.0) & inside[sl]
        medial = -k["side"] * u  # > 0 towards the hilum
        sinus = kidney & ((r < 0.3) | ((medial > 0.45) & (np.abs(w) < 0.35) & (np.abs(v) < 0.5)))
        canvas.paint(sl, kidney, _T["kidney_cortex"])
        canvas.paint(sl, kidney & (r < 0.72), _T["kidney_medulla"])
        canvas.paint(sl, sinus, _T["fat"])


def _paint_gallbladder(canvas: _Canvas, grid: _Grid, anat: dict[str, Any], inside: np.ndarray) -> None:
    """Gallbladder under the liver: bile at water density."""
    p = anat["gallbladder"]
    if p is None:
        return
    found = _ellipsoid(grid, p["centre"], p["semi"], p["angles"])
    if found is None:
        return
    sl, (u, v, w) = found
    canvas.paint(sl, (u * u + v * v + w * w < 1.0) & inside[sl], _T["gallbladder"])


def _paint_gi(canvas: _Canvas, grid: _Grid, rng: np.random.Generator, tubes: list[_Tube], inside, anat) -> None:
    """Bowel: walls, and lumens that are fluid, collapsed, stool or gas above a fluid level."""
    found = _tube_field(grid, tubes)
    if found is None:
        return
    sl, dist, nearest, table = found
    r = table["radius"][nearest].astype(np.float32)
    wall = np.minimum(table["wall"][nearest], 0.6 * table["radius"][nearest]).astype(np.float32)
    wall = np.maximum(wall, np.float32(0.6 * grid.step[:2].min()))  # keep walls visible at coarse grids
    kind = table["kind"][nearest]
    tube = (dist <= r) & inside[sl]
    lumen = tube & (dist <= r - wall)
    # Gas floats anteriorly (small y): attribute "gas" is the fraction of the lumen height above
    # the fluid level (0: no gas).
    _, y, _ = grid.coords(sl)
    centre_y = table["points"][nearest, 1].astype(np.float32)
    gas = lumen & ((y - centre_y) < (table["gas"][nearest].astype(np.float32) * 2.0 - 1.0) * r)
    canvas.paint(sl, tube, _T["bowel_wall"])
    canvas.paint(sl, lumen & (kind == 0), _T["bowel_fluid"])
    canvas.paint(sl, tube & (kind == 1), _T["bowel_collapsed"])
    if np.any(lumen & (kind == 2)):
        mottle = _smooth_noise(rng, dist.shape, 1.5)  # stool: mottled gas and faeces
        stool = lumen & (kind == 2)
        canvas.paint(sl, stool, _T["stool"])
        canvas.paint(sl, stool & (mottle > 1.3), _T["bowel_gas"])
    food = lumen & (kind == 3)
    canvas.paint(sl, food, _T["bowel_fluid"], extra=rng.uniform(0.0, 30.0))
    canvas.paint(sl, gas & (kind != 1), _T["bowel_gas"])


def _paint_pancreas(
    canvas: _Canvas, grid: _Grid, rng: np.random.Generator, anat: dict[str, Any], inside: np.ndarray, lesions: bool
) -> dict[str, Any]:
    """The pancreas: a lobulated tube, flattened front to back, with fatty clefts and lesions."""
    tube = _tube(anat["pancreas_ctrl"], anat["pancreas_radii"], anat["fine"])
    metric = (1.0, 0.75, 1.2)
    found = _tube_field(grid, [tube], metric)
    info: dict[str, Any] = {"lesions": 0}
    if found is None:
        return info
    sl, dist, nearest, table = found
    shape = dist.shape
    cell = max(3.0, 12.0 / float(grid.step.min()))  # lobules about 12 mm across
    lob = _smooth_noise(rng, shape, cell, order=3)
    crinkle = _smooth_noise(rng, shape, max(1.5, cell / 2.5))
    r = table["radius"][nearest].astype(np.float32)
    r_eff = r * (1.0 + np.float32(anat["pancreas_lobulation"]) * lob + np.float32(0.05) * crinkle)
    organ = (dist <= r_eff) & inside[sl]
    # Fatty infiltration lowers and mottles the density inside the outline (which stays labeled).
    fat_fraction = np.clip(anat["pancreas_fat"] + 0.08 * crinkle, 0.0, 0.4).astype(np.float32)
    canvas.paint(sl, organ, _T["pancreas"], extra=fat_fraction * np.float32(-200.0))
    if lesions:
        p = anat["lesions"]
        x, y, z = grid.coords(sl)
        for k in range(p["count"]):
            i = int(round(p["t"][k] * (len(tube.points) - 1)))
            rad = float(tube.radius[i]) * p["size"][k]
            rad = max(rad, 1.6 * float(grid.step.max()))
            c = tube.points[i] + p["offset"][k] * tube.radius[i] * np.array(metric)
            d2 = (
                ((x - c[0]) / rad) ** 2
                + ((y - c[1]) / (rad * metric[1])) ** 2
                + ((z - c[2]) / (rad * metric[2])) ** 2
            )
            blob = (d2 < 1.0) & (dist <= r_eff * 1.2) & inside[sl]
            canvas.paint(sl, blob, _T["lesion"], extra=float(p["hu"][k]) - _PORTAL_VENOUS["lesion"][0])
            info["lesions"] += int(blob.any())
    return info


def _paint_thorax(canvas: _Canvas, grid: _Grid, anat: dict[str, Any], body: dict[str, np.ndarray]) -> None:
    """Lung bases and heart above the diaphragm."""
    z_dia = body["z_dia"]
    zmin = float(z_dia.min())
    sl = grid.box([-1e9, -1e9, zmin], [1e9, 1e9, 1e9])
    if sl is None:
        return
    x, y, z = grid.coords(sl)
    above = (z > z_dia[:, :, None]) & (body["d_out"][sl] < -1.0)
    mediastinum = ((x - 5.0) / 38.0) ** 2 + ((y + 15.0) / 70.0) ** 2 < 1.0
    canvas.paint(sl, above & ~mediastinum, _T["lung"])
    canvas.paint(sl, above & mediastinum, _T["fat"])
    heart_c = np.array([15.0, -30.0, max(anat["dome_r"], anat["dome_l"]) + 35.0])
    found = _ellipsoid(grid, heart_c, [60.0, 48.0, 55.0], (0.0, 0.0, 25.0))
    if found is not None:
        hsl, (u, v, w) = found
        above_h = grid.coords(hsl)[2] > z_dia[hsl[0], hsl[1]][:, :, None]
        canvas.paint(hsl, (u * u + v * v + w * w < 1.0) & above_h, _T["heart"])


def _paint_vessels(canvas: _Canvas, grid: _Grid, anat: dict[str, Any], allowed: np.ndarray) -> None:
    """Arteries, portal-system veins and the IVC; they carve every organ they cross."""
    found = _tube_field(grid, anat["vessels"])
    if found is None:
        return
    sl, dist, nearest, table = found
    r = np.maximum(table["radius"][nearest], 0.6 * float(grid.step[:2].min())).astype(np.float32)
    kind = table["kind"][nearest]
    vessel = (dist <= r) & allowed[sl]
    for k, name in enumerate(("artery", "vein", "ivc")):
        canvas.paint(sl, vessel & (kind == k), _T[name])


def _paint_muscles(canvas: _Canvas, grid: _Grid, anat: dict[str, Any], body: np.ndarray) -> None:
    """Paraspinal, quadratus lumborum and psoas muscles."""
    y_vb = anat["y_vb"]
    sl = grid.box([-110.0, y_vb - 30.0, -1e9], [110.0, 1e9, 1e9])
    if sl is None:
        return
    x, y, z = grid.coords(sl)
    b = body[sl]
    for side in (-1.0, 1.0):
        para = ((x - side * 32.0) / 24.0) ** 2 + ((y - (y_vb + 42.0)) / 17.0) ** 2 < 1.0
        canvas.paint(sl, para & b, _T["muscle"])
        ql = (((x - side * 62.0) / 12.0) ** 2 + ((y - (y_vb + 30.0)) / 10.0) ** 2 < 1.0) & (z < -30.0)
        canvas.paint(sl, ql & b, _T["muscle"])
        grow = np.clip((-20.0 - z) * 0.15, 0.0, 18.0)  # psoas thickens towards the pelvis
        size = 6.0 + grow
        psoas = (((x - side * (26.0 + grow)) / size) ** 2 + ((y - (y_vb + 2.0)) / size) ** 2 < 1.0) & (z < -15.0)
        canvas.paint(sl, psoas & b, _T["muscle"])


def _paint_spine(canvas: _Canvas, grid: _Grid, anat: dict[str, Any]) -> None:
    """Vertebrae (cortical shell, cancellous body, discs, posterior elements) and the canal."""
    y_vb, xs = anat["y_vb"], anat["x_spine"]
    sl = grid.box([xs - 50.0, y_vb - 20.0, -1e9], [xs + 50.0, y_vb + 60.0, 1e9])
    if sl is None:
        return
    x, y, z = grid.coords(sl)
    x = x - np.float32(xs)
    shell = max(2.5, 1.5 * float(grid.step[:2].max()))
    endplate = max(2.0, 1.0 * float(grid.step[2]))
    period = _VERTEBRA_PERIOD
    ph = np.mod(z - np.float32(anat["vertebra_phase"]), period)
    rv = np.sqrt((x / 21.0) ** 2 + ((y - y_vb) / 15.0) ** 2)
    vb = rv < 1.0
    bone_level = ph < 27.0
    canvas.paint(sl, vb & ~bone_level, _T["disc"])
    cortical = (rv > 1.0 - shell / 15.0) | (ph < endplate) | (ph > 27.0 - endplate)
    canvas.paint(sl, vb & bone_level & cortical, _T["cortical_bone"])
    canvas.paint(sl, vb & bone_level & ~cortical, _T["cancellous_bone"])
    y_canal = y_vb + 15.0 + 10.0
    rc = np.sqrt(x**2 + (y - y_canal) ** 2)
    arch = (rc >= 9.0) & (rc < 9.0 + max(5.0, shell * 2)) & (y > y_canal - 3.0) & (ph > 2.0) & (ph < 26.0)
    spinous = (np.abs(x) < max(3.5, shell)) & (y > y_canal + 10.0) & (y < y_canal + 30.0) & (ph > 4.0) & (ph < 22.0)
    transverse = (np.abs(y - (y_canal - 2.0)) < max(4.0, shell)) & (np.abs(x) > 10.0) & (np.abs(x) < 42.0)
    transverse = transverse & (ph > 8.0) & (ph < 18.0)
    canvas.paint(sl, arch | spinous | transverse, _T["cortical_bone"])
    canvas.paint(sl, rc < 9.0, _T["csf"])


def _paint_ribs(canvas: _Canvas, grid: _Grid, anat: dict[str, Any], body: dict[str, np.ndarray]) -> None:
    """Ribs: bony bands in the wall that descend from the spine around the flank.

    In a slice at height z, rib n shows where ``z + K * phi`` falls inside the n-th band,
    ``phi`` being the angle from the posterior midline: ribs slope down towards the front.
    """
    slope = 45.0  # mm of descent per radian around the trunk
    period = _VERTEBRA_PERIOD
    z_ref = anat["vertebra_phase"] + period * math.floor((30.0 - anat["vertebra_phase"]) / period)  # 12th rib
    sl = grid.box([-1e9, -1e9, z_ref - slope * 1.4 - 10.0], [1e9, 1e9, 1e9])
    if sl is None:
        return
    _, _, z = grid.coords(sl)
    phi = body["phi"][:, :, None].astype(np.float32)
    half_h = max(6.0, 0.8 * float(grid.step[2]))
    half_r = max(4.0, 0.8 * float(grid.step[:2].max()))
    u = (z - np.float32(z_ref - half_h) + np.float32(slope) * (phi - np.float32(0.35))) / np.float32(period)
    n = np.floor(u)
    a = ((u - n) * period - half_h) / half_h
    b = (body["d_out"][sl] + 2.0) / np.float32(half_r)
    ends = np.array([1.4, 1.9, 2.45, 2.6, 2.6, 2.6, 2.6, 2.6, 2.6, 2.6, 2.6, 2.6], dtype=np.float32)
    n_idx = np.clip(n, -1, len(ends) - 1).astype(np.int64)
    reach = np.where(n_idx >= 0, ends[np.clip(n_idx, 0, None)], -1.0)
    rr = a * a + b * b
    rib = (rr < 1.0) & (phi > 0.35) & (phi < reach) & (a > -1.0) & (a < 1.0)
    canvas.paint(sl, rib, _T["cortical_bone"])
    canvas.paint(sl, rib & (rr < 0.35), _T["cancellous_bone"])


# ---------------------------------------------------------------------------------------------
# Data set
# ---------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _case_files(config: PhantomConfig) -> list[dict[str, str]]:
    return [
        {"id": f"case_{k:03d}", "image": f"imagesTr/case_{k:03d}.nii.gz", "label": f"labelsTr/case_{k:03d}.nii.gz"}
        for k in range(config.cases)
    ]


def phantom_status(out_dir: str | os.PathLike, config: PhantomConfig) -> str:
    """What :func:`write_phantom_dataset` would find in ``out_dir``.

    Args:
        out_dir: output folder.
        config: the configuration to write.

    Returns:
        ``"empty"`` (missing or empty folder), ``"complete"`` (a finished phantom of exactly this
        configuration: nothing to do) or ``"partial"`` (an interrupted run of this configuration,
        safe to finish).

    Raises:
        ConfigError: ``out_dir`` is a file, or a non-empty folder that is not a phantom of this
            configuration; it is never written to.
    """
    out = Path(out_dir)
    if not out.exists():
        return "empty"
    if not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    if not any(out.iterdir()):
        return "empty"
    wanted = config.to_dict()
    dataset = _read_json(out / _DATASET_FILE)
    if isinstance(dataset, dict) and isinstance(dataset.get("phantom"), dict):
        found = dataset["phantom"]
        if found == wanted:
            files = [out / c[key] for c in _case_files(config) for key in ("image", "label")]
            return "complete" if all(f.is_file() for f in files) else "partial"
        diffs = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
        detail = "; ".join(f"{k}: {found.get(k)!r} there, {wanted.get(k)!r} asked" for k in diffs)
        raise ConfigError(
            f"{out} holds a phantom of another configuration ({detail}); refusing to overwrite it "
            "(choose another folder)"
        )
    marker = _read_json(out / _IN_PROGRESS)
    if isinstance(marker, dict) and marker == wanted:
        return "partial"
    raise ConfigError(
        f"{out} is not empty and is not a phantom of this configuration; "
        "refusing to write into it (choose an empty or new folder)"
    )


def write_phantom_dataset(
    out_dir: str | os.PathLike,
    config: PhantomConfig,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the phantom data set: NIfTI images and labels plus ``dataset.json``.

    Layout: ``imagesTr/case_000.nii.gz`` (int16 HU), ``labelsTr/case_000.nii.gz`` (uint8,
    1 = pancreas) and ``dataset.json`` (written last, with the resolved configuration under
    ``"phantom"``). A folder already holding this exact phantom is left as it is; an interrupted
    run of the same configuration is finished.

    Args:
        out_dir: output folder; must be missing, empty, or a phantom of this configuration.
        config: what to generate.
        progress: called with ``(cases done, cases)`` after each case.

    Returns:
        The path of ``dataset.json``.

    Raises:
        ConfigError: ``out_dir`` holds other data (see :func:`phantom_status`).
    """
    out = Path(out_dir)
    status = phantom_status(out, config)
    dataset_path = out / _DATASET_FILE
    if status == "complete":
        return dataset_path
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(config.to_dict(), indent=2) + "\n", out / _IN_PROGRESS)
    entries = _case_files(config)
    for k, entry in enumerate(entries):
        image_path, label_path = out / entry["image"], out / entry["label"]
        if not (status == "partial" and image_path.is_file() and label_path.is_file()):
            image, label, affine = make_phantom_case(case_rng(config.seed, k, config.domain), config, k)
            save_nifti(label, affine, label_path, dtype=np.uint8)
            save_nifti(image, affine, image_path, dtype=np.int16)  # image last: it marks the case done
        if progress is not None:
            progress(k + 1, len(entries))
    scanner = (
        "portal-venous source scanner"
        if config.domain == "source"
        else "shifted arterial-phase scanner with pancreatic lesions"
    )
    description = (
        f"Synthetic contrast-enhanced abdominal CT with pancreas labels (atso-med phantom, {scanner}); "
        "a stand-in for NIH Pancreas-CT."
    )
    dataset = {
        "name": "phantom" if config.domain == "source" else "phantom-shifted",
        "description": description,
        "labels": {"0": "background", "1": "pancreas"},
        "cases": entries,
        "phantom": config.to_dict(),
    }
    write_text_atomic(json.dumps(dataset, indent=2) + "\n", dataset_path)
    (out / _IN_PROGRESS).unlink(missing_ok=True)
    return dataset_path


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
