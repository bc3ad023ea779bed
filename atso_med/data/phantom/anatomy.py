"""The anatomy of one phantom case: drawing its parameters and painting every structure, back to
front, onto the tissue canvas.

Drawing and painting stay in one module although it is long: the parameters :func:`draw_anatomy`
draws for a structure (keys of one dict) are read only by that structure's painter, so a change
to one organ touches both halves; split, each would be read only against the other.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from atso_med.data.phantom.geometry import (
    ALL,
    Canvas,
    Grid,
    Tube,
    curve,
    ellipsoid,
    make_tube,
    random_walk,
    smooth_noise,
    tube_field,
)
from atso_med.data.phantom.parameters import CAVITY_A, CAVITY_B, PORTAL_VENOUS, TISSUES, VERTEBRA_PERIOD

_T = TISSUES  # short for the many lookups below


def draw_anatomy(rng: np.random.Generator, step: np.ndarray) -> dict[str, Any]:
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
    a["vertebra_phase"] = rng.uniform(0.0, VERTEBRA_PERIOD)
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
    gi: list[Tube] = []
    pylorus = head_up + np.array([-2.0, -28.0, 8.0])
    stomach_size = rng.uniform(0.75, 1.15)
    gi.append(
        make_tube(
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
        make_tube(
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
            walk = random_walk(rng, lo, hi, int(rng.integers(6, 11)), 28.0)
            gi.append(
                make_tube(
                    walk,
                    np.full(len(walk), r),
                    fine,
                    group=0,
                    kind=kind if kind != 2 else 0,
                    wall=2.5,
                    gas=rng.uniform(0.1, 0.6) if kind == 2 else 0.0,
                )
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
        make_tube(
            colon,
            np.array([25, 20, 20, 18, 17, 17, 16, 15, 14, 14, 13]) * rng.uniform(0.85, 1.15),
            fine,
            group=0,
            kind=2,
            wall=2.5,
            gas=rng.uniform(0.1, 0.4),
        )
    )
    a["gi"] = gi

    # Vessels: kind 0 artery, 1 vein (portal system, renal, hepatic, iliac), 2 IVC.
    xa, ya, ra = a["x_aorta"], a["y_aorta"], a["r_aorta"]
    xi, yi = -24.0 + rng.normal(0, 2), a["y_vb"] - 28.0
    pt = ctrl
    rv = rng.uniform(3.5, 5.0)
    # Splenic vein: along the back of the body and tail, partly sunk into a groove.
    sv_pts, sv_t, _ = curve(pt[3:], fine)
    sv_r = np.interp(sv_t, np.linspace(0, 1, len(pt) - 3), radii[3:])
    sv = sv_pts + np.stack([np.zeros_like(sv_t), 0.75 * sv_r + 0.3 * rv, 0.15 * sv_r], axis=1)
    sv_ctrl = np.concatenate([[conf], sv[:: max(1, len(sv) // 6)][1:], [a["spleen"]["centre"] + [-15, -5, -15]]])
    hilum = np.array([-46.0, 8.0, 48.0]) + a["liver"]["shift"]
    kl, kr = a["kidneys"][0]["centre"], a["kidneys"][1]["centre"]
    spleen_hilum = a["spleen"]["centre"]
    artery, vein, ivc = 0, 1, 2

    def vessel(kind: int, radii_, *points) -> Tube:
        return make_tube(points, radii_, fine, kind=kind)

    vessels = [
        # Aorta down to its bifurcation, common iliac arteries.
        vessel(
            artery,
            [ra * 1.05, ra, ra * 0.95, ra * 0.85],
            [xa, ya, 260],
            [xa, ya, 60],
            [xa, ya, -60],
            [xa - 2, ya, -160],
        ),
        vessel(artery, [6.5, 6.0], [xa - 2, ya, -160], [xa + 35, ya + 8, -260]),
        vessel(artery, [6.5, 6.0], [xa - 2, ya, -160], [xa - 40, ya + 8, -260]),
        # IVC from the iliac confluence up through the liver into the heart.
        vessel(ivc, [a["r_ivc"]] * 4, [xi, yi, -165], [xi, yi, 60], [xi + 6, yi - 8, 120], [xi + 20, yi - 30, 170]),
        vessel(vein, [7.0, 6.5], [xi, yi, -165], [xi + 30, yi + 12, -260]),
        vessel(vein, [7.0, 6.5], [xi, yi, -165], [xi - 30, yi + 14, -260]),
        # Celiac trunk, common hepatic and splenic arteries (tortuous along the upper border).
        vessel(artery, [3.5, 3.5, 3.0, 2.8], [xa, ya - ra + 2, 28], [xa, -12, 32], [-30, -8, 32], hilum + [0, -4, -4]),
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


def _paint_body(canvas: Canvas, grid: Grid, anat: dict[str, Any]) -> dict[str, np.ndarray]:
    """Body outline: skin, subcutaneous fat, muscle wall, and the visceral fat of the cavity.

    Returns:
        ``d_out`` (signed radial distance in mm outside the cavity ellipse, per voxel), ``body``
        (mask), ``phi`` (angle from the posterior midline, per (x, y)) and ``z_dia`` (height of
        the diaphragm per (x, y)).
    """
    x, y, z = grid.coords(ALL)
    x2, y2 = x[:, :, 0], y[:, :, 0]
    rho = np.sqrt((x2 / CAVITY_A) ** 2 + (y2 / CAVITY_B) ** 2)
    theta = np.arctan2(y2, x2)
    cos, sin = np.cos(theta), np.sin(theta)
    radius = 1.0 / np.sqrt((cos / CAVITY_A) ** 2 + (sin / CAVITY_B) ** 2)
    widen = 1.0 + 0.05 * np.tanh((z[0, 0, :] - 40.0) / 100.0)  # wider under the costal margin
    d_out = (radius[:, :, None] * (rho[:, :, None] - widen[None, None, :])).astype(np.float32)
    t_muscle = anat["muscle"] * (1.0 + 0.3 * cos**2)
    wobble = sum(c * np.cos(k * theta + p) for k, c, p in anat["fourier"])
    t_fat = np.clip(anat["fat"] * (1.0 - 0.3 * sin + 0.25 * cos**2) + 12.0 * wobble, 2.0, None)
    outer = (t_muscle + t_fat).astype(np.float32)[:, :, None]
    body = d_out < outer
    canvas.paint(ALL, body, _T["fat"])
    skin = max(2.0, 1.1 * float(grid.step[:2].max()))  # at least a voxel, or it breaks up
    canvas.paint(ALL, body & ((d_out <= t_muscle[:, :, None]) | (d_out > outer - skin)), _T["muscle"])
    canvas.paint(ALL, d_out <= 0.0, _T["fat"])
    phi = np.arccos(np.clip(y2 / np.maximum(np.hypot(x2, y2), 1e-3), -1.0, 1.0))
    # Diaphragm: two domes, lower towards the periphery and far lower posteriorly (recesses).
    yd = y2 - 5.0
    z_dia = np.maximum(
        anat["dome_r"] - ((x2 + 55.0) ** 2 + yd**2) / 120.0,
        anat["dome_l"] - ((x2 - 60.0) ** 2 + yd**2) / 120.0,
    ) - 0.3 * np.clip(y2, 0.0, None)
    return {"d_out": d_out, "body": body, "phi": phi, "z_dia": z_dia.astype(np.float32)}


def _paint_liver(canvas: Canvas, grid: Grid, anat: dict[str, Any], inside: np.ndarray) -> None:
    """Liver: a right lobe and a left lobe reaching across the midline in front of the stomach."""
    p = anat["liver"]
    s, sh = p["scale"], p["shift"]
    lobes = [
        (np.array([-65.0, 0.0, 62.0]) + sh, np.array([72.0, 82.0, 82.0]) * s, (0.0, p["tilt"], 0.0)),
        (np.array([5.0, -45.0, 80.0]) + sh, np.array([58.0 * p["left_lobe"], 35.0, 38.0]) * s, (0.0, 0.0, -10.0)),
    ]
    for centre, semi, angles in lobes:
        found = ellipsoid(grid, centre, semi, angles)
        if found is None:
            continue
        sl, (u, v, w) = found
        canvas.paint(sl, (u * u + v * v + w * w < 1.0) & inside[sl], _T["liver"])


def _paint_spleen(canvas: Canvas, grid: Grid, anat: dict[str, Any], inside: np.ndarray) -> None:
    """Spleen: a flattened ellipsoid along the left posterolateral wall, dented at the hilum."""
    p = anat["spleen"]
    found = ellipsoid(grid, p["centre"], p["semi"], (0.0, 0.0, p["angle"]))
    if found is None:
        return
    sl, (u, v, w) = found
    r2 = u * u + v * v + w * w
    dent = ((u + 0.9) ** 2 + (v * 1.4) ** 2 + (w * 1.6) ** 2) < 0.35  # concave hilum
    canvas.paint(sl, (r2 < 1.0) & ~dent & inside[sl], _T["spleen"])


def _paint_kidneys(canvas: Canvas, grid: Grid, anat: dict[str, Any], inside: np.ndarray) -> None:
    """Kidneys with cortex, medulla and a sinus of fat opening anteromedially at the hilum."""
    for k in anat["kidneys"]:
        found = ellipsoid(grid, k["centre"], k["semi"], k["angles"])
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


def _paint_gallbladder(canvas: Canvas, grid: Grid, anat: dict[str, Any], inside: np.ndarray) -> None:
    """Gallbladder under the liver: bile at water density."""
    p = anat["gallbladder"]
    if p is None:
        return
    found = ellipsoid(grid, p["centre"], p["semi"], p["angles"])
    if found is None:
        return
    sl, (u, v, w) = found
    canvas.paint(sl, (u * u + v * v + w * w < 1.0) & inside[sl], _T["gallbladder"])


def _paint_gi(canvas: Canvas, grid: Grid, rng: np.random.Generator, tubes: list[Tube], inside, anat) -> None:
    """Bowel: walls, and lumens that are fluid, collapsed, stool or gas above a fluid level."""
    found = tube_field(grid, tubes)
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
        mottle = smooth_noise(rng, dist.shape, 1.5)  # stool: mottled gas and faeces
        stool = lumen & (kind == 2)
        canvas.paint(sl, stool, _T["stool"])
        canvas.paint(sl, stool & (mottle > 1.3), _T["bowel_gas"])
    food = lumen & (kind == 3)
    canvas.paint(sl, food, _T["bowel_fluid"], extra=rng.uniform(0.0, 30.0))
    canvas.paint(sl, gas & (kind != 1), _T["bowel_gas"])


def _paint_pancreas(
    canvas: Canvas, grid: Grid, rng: np.random.Generator, anat: dict[str, Any], inside: np.ndarray, lesions: bool
) -> dict[str, Any]:
    """The pancreas: a lobulated tube, flattened front to back, with fatty clefts and lesions."""
    tube = make_tube(anat["pancreas_ctrl"], anat["pancreas_radii"], anat["fine"])
    metric = (1.0, 0.75, 1.2)
    found = tube_field(grid, [tube], metric)
    info: dict[str, Any] = {"lesions": 0}
    if found is None:
        return info
    sl, dist, nearest, table = found
    shape = dist.shape
    cell = max(3.0, 12.0 / float(grid.step.min()))  # lobules about 12 mm across
    lob = smooth_noise(rng, shape, cell, order=3)
    crinkle = smooth_noise(rng, shape, max(1.5, cell / 2.5))
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
            d2 = ((x - c[0]) / rad) ** 2 + ((y - c[1]) / (rad * metric[1])) ** 2 + ((z - c[2]) / (rad * metric[2])) ** 2
            blob = (d2 < 1.0) & (dist <= r_eff * 1.2) & inside[sl]
            canvas.paint(sl, blob, _T["lesion"], extra=float(p["hu"][k]) - PORTAL_VENOUS["lesion"][0])
            info["lesions"] += int(blob.any())
    return info


def _paint_thorax(canvas: Canvas, grid: Grid, anat: dict[str, Any], body: dict[str, np.ndarray]) -> None:
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
    found = ellipsoid(grid, heart_c, [60.0, 48.0, 55.0], (0.0, 0.0, 25.0))
    if found is not None:
        hsl, (u, v, w) = found
        above_h = grid.coords(hsl)[2] > z_dia[hsl[0], hsl[1]][:, :, None]
        canvas.paint(hsl, (u * u + v * v + w * w < 1.0) & above_h, _T["heart"])


def _paint_vessels(canvas: Canvas, grid: Grid, anat: dict[str, Any], allowed: np.ndarray) -> None:
    """Arteries, portal-system veins and the IVC; they carve every organ they cross."""
    found = tube_field(grid, anat["vessels"])
    if found is None:
        return
    sl, dist, nearest, table = found
    r = np.maximum(table["radius"][nearest], 0.6 * float(grid.step[:2].min())).astype(np.float32)
    kind = table["kind"][nearest]
    vessel = (dist <= r) & allowed[sl]
    for k, name in enumerate(("artery", "vein", "ivc")):
        canvas.paint(sl, vessel & (kind == k), _T[name])


def _paint_muscles(canvas: Canvas, grid: Grid, anat: dict[str, Any], body: np.ndarray) -> None:
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


def _paint_spine(canvas: Canvas, grid: Grid, anat: dict[str, Any]) -> None:
    """Vertebrae (cortical shell, cancellous body, discs, posterior elements) and the canal."""
    y_vb, xs = anat["y_vb"], anat["x_spine"]
    sl = grid.box([xs - 50.0, y_vb - 20.0, -1e9], [xs + 50.0, y_vb + 60.0, 1e9])
    if sl is None:
        return
    x, y, z = grid.coords(sl)
    x = x - np.float32(xs)
    shell = max(2.5, 1.5 * float(grid.step[:2].max()))
    endplate = max(2.0, 1.0 * float(grid.step[2]))
    period = VERTEBRA_PERIOD
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


def _paint_ribs(canvas: Canvas, grid: Grid, anat: dict[str, Any], body: dict[str, np.ndarray]) -> None:
    """Ribs: bony bands in the wall that descend from the spine around the flank.

    In a slice at height z, rib n shows where ``z + K * phi`` falls inside the n-th band,
    ``phi`` being the angle from the posterior midline: ribs slope down towards the front.
    """
    slope = 45.0  # mm of descent per radian around the trunk
    period = VERTEBRA_PERIOD
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


def paint_anatomy(
    canvas: Canvas, grid: Grid, rng: np.random.Generator, anat: dict[str, Any], lesions: bool
) -> dict[str, Any]:
    """Paint every structure of a case onto its canvas, back to front (later structures win).

    Args:
        canvas: the tissue canvas of the case.
        grid: its voxel grid in the standard frame.
        rng: the case's random stream (drawn from in a fixed order: the output is reproducible).
        anat: the case's anatomy parameters (:func:`draw_anatomy`).
        lesions: paint hypodense lesions into the pancreas (the shifted domain).

    Returns:
        The pancreas's parameters for the case's metadata.
    """
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
    pancreas_info = _paint_pancreas(canvas, grid, rng, anat, inside, lesions)
    _paint_thorax(canvas, grid, anat, body)
    _paint_vessels(canvas, grid, anat, body["d_out"] < 2.0)
    _paint_muscles(canvas, grid, anat, body["body"])
    _paint_spine(canvas, grid, anat)
    _paint_ribs(canvas, grid, anat, body)
    return pancreas_info
