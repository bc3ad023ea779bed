"""The phantom's configuration: tissues and their intensities per contrast phase, scanner presets,
the adult-body scale, and :class:`PhantomConfig` with the random stream of each case."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np

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


#: The label maps :class:`PhantomConfig` can write (its ``labels`` field).
LABEL_MAPS = ("pancreas", "organs")


class OrganClass(NamedTuple):
    """One class of the ``"organs"`` label map.

    Attributes:
        name: the class name written to dataset.json's ``labels``.
        tissues: the tissues of :data:`TISSUES` that make up the organ.
        side: ``"left"`` or ``"right"``: only the voxels on that side of the body's midline
            (x = 0 of the anatomy frame), for paired organs that share their tissues; ``None``
            for all of them.
    """

    name: str
    tissues: tuple[str, ...]
    side: str | None = None


#: The classes of the ``"organs"`` label map; class ``k`` is entry ``k - 1`` (0 is background).
#: Every voxel holds one tissue (later paint wins), and the tissue sets are disjoint (the kidneys
#: split theirs by side), so each voxel gets exactly one class. Pancreas is class 1 with its
#: lesions, as in the single-organ map. Tissues not listed (fat, muscle, bone, lung, heart...)
#: are background; so is the renal sinus fat, painted as fat.
ORGAN_CLASSES: tuple[OrganClass, ...] = (
    OrganClass("pancreas", ("pancreas", "lesion")),
    OrganClass("liver", ("liver",)),
    OrganClass("spleen", ("spleen",)),
    OrganClass("kidney_left", ("kidney_cortex", "kidney_medulla"), "left"),
    OrganClass("kidney_right", ("kidney_cortex", "kidney_medulla"), "right"),
    OrganClass("gallbladder", ("gallbladder",)),
    # Stomach, duodenum, small bowel and colon share their tissues: one class, contents included.
    OrganClass("gi_tract", ("bowel_wall", "bowel_fluid", "bowel_gas", "bowel_collapsed", "stool")),
    # Aorta, common iliac, celiac, common hepatic, splenic, superior mesenteric, renal arteries.
    OrganClass("arteries", ("artery",)),
    # Portal (with its branches in the liver), superior mesenteric, splenic, renal, hepatic and
    # common iliac veins; the IVC has a tissue, and so a class, of its own.
    OrganClass("veins", ("vein",)),
    OrganClass("ivc", ("ivc",)),
)


def label_names(labels: str) -> dict[str, str]:
    """The ``labels`` entry of dataset.json for a label map.

    Args:
        labels: one of :data:`LABEL_MAPS`.

    Returns:
        Class value (as a string) -> name, background included.
    """
    if labels == "pancreas":
        return {"0": "background", "1": "pancreas"}
    return {"0": "background", **{str(k): c.name for k, c in enumerate(ORGAN_CLASSES, start=1)}}


# Per-phase intensity model: tissue -> (mean HU, per-case s.d. of the mean, texture amplitude HU).
PORTAL_VENOUS: dict[str, tuple[float, float, float]] = {
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
ARTERIAL: dict[str, tuple[float, float, float]] = {
    **PORTAL_VENOUS,
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


PHASES = {"portal_venous": PORTAL_VENOUS, "arterial": ARTERIAL}


# Scanner presets; copied into the resolved configuration written to dataset.json.
DOMAIN_PRESETS: dict[str, dict[str, Any]] = {
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
CAVITY_A, CAVITY_B = 130.0, 95.0


BODY_WIDTH = 320.0


BODY_FILL = 0.8


VERTEBRA_PERIOD = 35.0


MIN_SHAPE = (32, 32, 16)


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
        labels: the label map written: ``"pancreas"`` (0 background, 1 pancreas incl. lesions)
            or ``"organs"`` (one class per organ, :data:`ORGAN_CLASSES`). The choice only reads
            the tissue map: the images, and the pancreas, are the same either way.
    """

    cases: int = 20
    seed: int = 0
    shape: tuple[int, int, int] = (128, 128, 80)
    spacing: tuple[float, float, float] = (1.5, 1.5, 2.5)
    domain: str = "source"
    vary_geometry: bool = True
    noise_scale: float = 1.0
    lesions: bool | None = None
    labels: str = "pancreas"

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
        if len(self.shape) != 3 or any(n < m for n, m in zip(self.shape, MIN_SHAPE, strict=True)):
            raise ConfigError(f"phantom shape must be 3 sizes of at least {MIN_SHAPE}, got {self.shape}")
        if len(self.spacing) != 3 or not all(math.isfinite(s) and 0.1 <= s <= 20 for s in self.spacing):
            raise ConfigError(f"phantom spacing must be 3 values in [0.1, 20] mm, got {self.spacing}")
        if self.domain not in DOMAINS:
            raise ConfigError(f"phantom domain must be one of {DOMAINS}, got {self.domain!r}")
        if not (math.isfinite(self.noise_scale) and 0 <= self.noise_scale <= 10):
            raise ConfigError(f"phantom noise_scale must be in [0, 10], got {self.noise_scale}")
        if self.labels not in LABEL_MAPS:
            raise ConfigError(f"phantom labels must be one of {LABEL_MAPS}, got {self.labels!r}")

    @property
    def preset(self) -> dict[str, Any]:
        """The scanner parameters of the domain, with ``lesions`` resolved."""
        preset = json.loads(json.dumps(DOMAIN_PRESETS[self.domain]))
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
        # The default label map is left out, so that the default's dataset.json is the one written
        # before the option existed and those phantoms stay complete (or resumable) as they are.
        if data["labels"] == "pancreas":
            del data["labels"]
        data["version"] = PHANTOM_VERSION
        data["scanner"] = {k: v for k, v in self.preset.items() if k != "lesions"}
        return data


@dataclass
class PhantomCase:
    """One rendered case with its debug information.

    Attributes:
        image: HU volume, int16, shape (H, W, D_case).
        label: uint8 label map of the configuration's ``labels``: the pancreas mask (0
            background, 1 pancreas incl. lesions) or the organ map (:data:`ORGAN_CLASSES`).
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
