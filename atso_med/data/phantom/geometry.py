"""Geometry of the phantom's anatomy frame: the voxel grid, the tissue canvas, and analytic shapes
(ellipsoids, curves, tubes) and smooth noise to paint with."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.interpolate import CubicSpline

ALL = (slice(None), slice(None), slice(None))


class Grid:
    """Voxel grid of a case in the standard adult frame (mm; x left, y posterior, z superior)."""

    def __init__(self, shape: tuple[int, int, int], step: np.ndarray, centre: np.ndarray) -> None:
        self.shape = shape
        self.step = np.asarray(step, dtype=np.float64)
        self.axes = [
            ((np.arange(n) - (n - 1) / 2.0) * st + c).astype(np.float32)
            for n, st, c in zip(shape, self.step, centre, strict=True)
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


class Canvas:
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


def rotation(angles_deg) -> np.ndarray:
    """Rotation matrix for angles (about x, about y, about z) in degrees, applied x then y then z."""
    ax, ay, az = (math.radians(a) for a in angles_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def ellipsoid(grid: Grid, centre, semi, angles=(0.0, 0.0, 0.0)):
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
    rot = rotation(angles)
    local = [(rot[0, k] * dx + rot[1, k] * dy + rot[2, k] * dz) / np.float32(semi[k]) for k in range(3)]
    return sl, local


def curve(ctrl, step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
class Tube:
    """A tube along a curve; per-point radius and attributes."""

    points: np.ndarray
    radius: np.ndarray
    attrs: dict[str, np.ndarray] = field(default_factory=dict)


def make_tube(ctrl, radii, step: float, **attrs: float) -> Tube:
    """A tube through control points with radius interpolated between control radii."""
    points, t, t_ctrl = curve(ctrl, step)
    radius = np.interp(t, t_ctrl, np.asarray(radii, dtype=np.float64))
    full = {k: np.full(len(points), v, dtype=np.float64) for k, v in attrs.items()}
    full["t"] = t
    return Tube(points, radius, full)


def tube_field(grid: Grid, tubes: list[Tube], metric=(1.0, 1.0, 1.0)):
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
    table = {k: np.concatenate([tube.attrs.get(k, np.zeros(len(tube.points))) for tube in tubes]) for k in keys}
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


def smooth_noise(rng: np.random.Generator, shape, cell: float, order: int = 1) -> np.ndarray:
    """Smooth random field of unit standard deviation with features about ``cell`` voxels wide."""
    coarse = tuple(max(2, int(math.ceil(n / cell)) + 1) for n in shape)
    grid = rng.standard_normal(coarse).astype(np.float32)
    field_ = ndimage.zoom(grid, [n / c for n, c in zip(shape, coarse, strict=True)], order=order, mode="nearest")
    field_ = field_[: shape[0], : shape[1], : shape[2]]
    if field_.shape != tuple(shape):  # zoom rounds sizes; pad the rare short axis
        field_ = np.pad(field_, [(0, n - m) for n, m in zip(shape, field_.shape, strict=True)], mode="edge")
    field_ -= field_.mean()
    return field_ / max(float(field_.std()), 1e-6)


def random_walk(rng: np.random.Generator, lo, hi, n: int, step: float) -> np.ndarray:
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
