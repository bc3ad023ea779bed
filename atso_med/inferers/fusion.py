"""Fusion: the planes of one model set into one label map, and several model sets into one by vote.

A prediction is binary (an organ mask; probabilities of the mask's shape) or of C classes (a label
map of values 0..C; probabilities ``(C, *spatial)``, one volume per class). A binary prediction is
the C = 1 case of every rule below, and gives the same mask.

A label map of probabilities (:func:`class_labels`): the most probable class among those with
probability >= threshold, else background (C = 1: the voxels >= threshold).

Plane fusion (:func:`fuse_planes`, streamed by :class:`PlaneFusion` inside the coarse-to-fine
inferer):

* ``"majority"``: each plane's label map votes; a class wins a voxel with more than half of the
  planes (2 of 3, both of 2, the single plane of 1). With 2 planes that name two different
  classes, the class of higher mean probability wins; a class against background loses.
* ``"mean"``: the label map of the planes' mean probabilities (what the reference code does).

Model-set vote (:func:`ensemble_vote`; :func:`vote_files` for label maps already written, as
ATSO's pseudo labels of several teachers are): a class wins a voxel with more than half of the
sets' votes. With an even number of sets a class may hold exactly half: against another class
with the other half, the higher mean probability wins; otherwise it wins when its mean probability
is >= 0.5 (C = 1: a tie is organ when the mean probability >= 0.5).

Every rule leaves background where no class wins, and holds one per-class sum and one per-class
vote count: the planes or sets are added one at a time and released.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from atso_med.errors import ConfigError, GridMismatchError
from atso_med.inferers.votes import (
    LabelVotes,
    ProbabilitySum,
    check_num_classes,
    class_labels,
    classes_first,
    label_confidence,
    voter_labels,
)

__all__ = [
    "FUSIONS",
    "PlaneFusion",
    "VoteAccumulator",
    "class_labels",
    "ensemble_vote",
    "fuse_planes",
    "uncertain_voxels_file",
    "vote_files",
]

#: Plane fusion rules understood by :func:`fuse_planes` and the inference configuration.
FUSIONS = ("majority", "mean")


class PlaneFusion:
    """Streams plane probability volumes into the fused label map and mean probabilities.

    Holds one float32 sum (and, for the majority rule, one vote count per class), so planes can
    be released as soon as they are added.

    Args:
        fusion: one of :data:`FUSIONS`.
        threshold: probability threshold in (0, 1).
        num_classes: ``None`` for binary planes (probabilities of the volume's shape, a 0/1 mask
            out), or C for planes of ``(C, *spatial)`` class probabilities (a 0..C label map out).
    """

    def __init__(self, fusion: str, threshold: float, num_classes: int | None = None) -> None:
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {threshold!r}")
        self.fusion = fusion
        self.threshold = float(threshold)
        self.num_classes = check_num_classes(num_classes)
        self.count = 0
        self._sum = ProbabilitySum()
        self._votes = LabelVotes(self.num_classes, np.uint8) if fusion == "majority" else None

    def add(self, probability: np.ndarray, owned: bool = False) -> None:
        """Adds one plane's float32 probabilities; ``owned`` lets the first one be reused as the sum."""
        if self.num_classes is not None and probability.shape[:1] != (self.num_classes,):
            raise GridMismatchError(
                f"plane probabilities of shape {probability.shape} have no leading axis of {self.num_classes} classes"
            )
        self._sum.add(probability, owned)
        if self._votes is not None:
            self._votes.add(class_labels(classes_first(probability, self.num_classes), self.threshold))
        self.count += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(label map uint8, mean probability float32)``; the sum is turned into the mean in place.

        The label map has the spatial shape (0/1 for binary planes, 0..C otherwise); the mean has
        the planes' shape.
        """
        mean = self._sum.total
        if mean is None:
            raise ConfigError("fuse_planes needs at least one plane")
        mean /= np.float32(self.count)
        per_class = classes_first(mean, self.num_classes)
        if self._votes is None:
            label = class_labels(per_class, self.threshold)
        else:
            label = self._votes.decide(per_class, tie_threshold=None)
        self._sum, self.count = ProbabilitySum(), 0  # ready for the next volume's planes
        if self._votes is not None:
            self._votes = LabelVotes(self.num_classes, np.uint8)
        return label, mean


def fuse_planes(
    probabilities: Sequence[np.ndarray],
    fusion: str = "majority",
    threshold: float = 0.5,
    num_classes: int | None = None,
) -> np.ndarray:
    """Fuses the probability volumes of the planes (1 to 3 for RSTN) into one label map.

    Args:
        probabilities: one probability volume per plane, all of one shape: the volume's shape
            (binary), or ``(C, *spatial)`` with ``num_classes`` C.
        fusion: ``"majority"``: a class wins where more than half of the planes' label maps
            (:func:`class_labels` at ``threshold``) name it (2 of 3; with 2 planes both must agree,
            or name two classes, of which the one of higher mean probability wins; 1 plane:
            itself). ``"mean"``: the label map of the mean probabilities.
        threshold: probability threshold in (0, 1).
        num_classes: ``None`` for binary planes, else C.

    Returns:
        uint8 label map of the spatial shape: 0/1 for binary planes, 0..C otherwise.

    Raises:
        ConfigError: on an unknown rule, a threshold out of range, or no volume.
        GridMismatchError: if the volumes differ in shape or lack the class axis.
    """
    fuser = PlaneFusion(fusion, threshold, num_classes)
    for probability in probabilities:
        fuser.add(np.asarray(probability, dtype=np.float32))
    return fuser.result()[0]


class VoteAccumulator:
    """Streams model sets' label maps and probabilities into the ensemble vote (one set in memory at a time).

    Args:
        tie_threshold: mean probability at which a class with half of an even vote beats
            background.
        num_classes: ``None`` for binary masks (non-zero = organ) and probabilities of their
            shape, or C for label maps of values 0..C and ``(C, *spatial)`` probabilities.
    """

    def __init__(self, tie_threshold: float = 0.5, num_classes: int | None = None) -> None:
        self.tie_threshold = float(tie_threshold)
        self.num_classes = check_num_classes(num_classes)
        self._votes = LabelVotes(self.num_classes, np.uint16)
        self._sum = ProbabilitySum()
        self._without_probability = 0

    @property
    def count(self) -> int:
        """The number of sets added."""
        return self._votes.count

    def add(self, mask: np.ndarray, probability: np.ndarray | None = None) -> None:
        """Adds one set's label map, with its probabilities (which an even vote needs for its ties).

        Raises:
            GridMismatchError: shapes that differ from each other or from the earlier sets'.
            LabelValueError: a label map value above C.
        """
        mask = np.asarray(mask)
        labels = voter_labels(mask, self.num_classes)
        if probability is None:
            self._without_probability += 1
        else:
            probability = np.asarray(probability, dtype=np.float32)
            expected = mask.shape if self.num_classes is None else (self.num_classes, *mask.shape)
            if probability.shape != expected:
                raise GridMismatchError(
                    f"mask shape {mask.shape} does not match probability shape {probability.shape}"
                    + ("" if self.num_classes is None else f" ({self.num_classes} classes first)")
                )
            self._sum.add(probability, owned=False)
        self._votes.add(labels)

    def result(self) -> tuple[np.ndarray, np.ndarray | None]:
        """``(label map uint8, mean probability float32)``; the mean is ``None`` when a set came without one.

        Raises:
            ConfigError: no set, or an even vote without every set's probabilities.
        """
        if not self.count:
            raise ConfigError("ensemble_vote needs at least one model set")
        mean = None
        if not self._without_probability:
            mean = (self._sum.total / np.float32(self.count)).astype(np.float32, copy=False)
        label = self._votes.decide(None if mean is None else classes_first(mean, self.num_classes), self.tie_threshold)
        return label, mean


def ensemble_vote(
    masks: Sequence[np.ndarray],
    probabilities: Sequence[np.ndarray],
    tie_threshold: float = 0.5,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse the predictions of several model sets.

    A class wins a voxel when more than half of the label maps name it. With an even number of
    sets, a class with exactly half of the votes wins against another class with the other half
    when its mean probability is the higher, and otherwise when its mean probability is >=
    ``tie_threshold``; background keeps every other voxel.

    Args:
        masks: one label map per set (binary: non-zero = organ; else values 0..C), all of one shape.
        probabilities: the matching probabilities (binary: the masks' shape; else ``(C, *spatial)``).
        tie_threshold: mean probability that breaks a tie against background.
        num_classes: ``None`` for binary masks, else C.

    Returns:
        ``(label map uint8, mean probability float32)``.

    Raises:
        ConfigError: no set, or counts that differ.
        GridMismatchError: shapes that differ.
        LabelValueError: a label map value above C.
    """
    if len(masks) != len(probabilities):
        raise ConfigError(f"{len(masks)} masks but {len(probabilities)} probability maps")
    vote = VoteAccumulator(tie_threshold, num_classes)
    for mask, probability in zip(masks, probabilities, strict=True):
        vote.add(mask, probability)
    return vote.result()


def vote_files(
    sources: Sequence[str | os.PathLike],
    case_id: str,
    target: str | os.PathLike,
    classes: Mapping[int, str] | None = None,
) -> Path:
    """Majority vote of several model sets' label maps of one case (the rule of :func:`ensemble_vote`).

    The label maps written on the image's grid are read one at a time; an even number of sets
    needs their ``<id>_probability.nii.gz`` files for the ties (with C > 1 classes, the 4D files
    that hold class c - 1 on their last axis).

    Args:
        sources: prediction folders, one per model set.
        case_id: the case.
        target: the voted label map's file (uint8 NIfTI, the first set's affine).
        classes: the label maps' classes (``{0: "background", 1: "liver", ...}``); ``None``:
            binary masks (non-zero = organ).

    Returns:
        ``target``.

    Raises:
        ConfigError: a probability file an even vote needs is missing, or bad ``classes``.
        GridMismatchError / LabelValueError: as :class:`VoteAccumulator`.
    """
    import nibabel as nib

    from atso_med.data.nifti import save_nifti
    from atso_med.data.writers import prediction_file

    num_classes = _vote_classes(classes)
    vote, affine = VoteAccumulator(num_classes=num_classes), None
    for source in sources:
        image = nib.load(str(prediction_file(source, case_id)))
        affine = image.affine if affine is None else affine
        probability = None
        if len(sources) % 2 == 0:  # an odd vote has no tie
            probability = _read_probability(source, case_id, num_classes, "an even vote breaks ties with them")
        vote.add(np.asarray(image.dataobj), probability)
    fused, _ = vote.result()
    return save_nifti(fused, affine, target, dtype=np.uint8)


def uncertain_voxels_file(
    sources: Sequence[str | os.PathLike],
    label_file: str | os.PathLike,
    case_id: str,
    target: str | os.PathLike,
    confidence: float,
    classes: Mapping[int, str] | None = None,
) -> dict[str, int]:
    """Mark the voxels of a pseudo label that its teachers are not sure of.

    A voxel is uncertain where the teachers' mean probability of the class the label names there
    (at background: one minus the sum of the class probabilities, :func:`~atso_med.inferers.votes.label_confidence`)
    is below ``confidence``; a training that reads the mask leaves those voxels out of its loss.

    Args:
        sources: the teachers' prediction folders (each with ``<id>_probability.nii.gz``).
        label_file: the pseudo label written from them.
        case_id: the case.
        target: the mask's file (uint8 NIfTI, 1 = uncertain, the label's affine).
        confidence: in (0.5, 1).
        classes: the label maps' classes; ``None``: binary masks.

    Returns:
        ``{"voxels", "uncertain", "organ", "uncertain_organ"}`` counts (organ: the label's non-zero voxels).

    Raises:
        ConfigError: a teacher's probability file is missing, or ``confidence`` outside (0.5, 1).
        GridMismatchError / LabelValueError: as :func:`~atso_med.inferers.votes.label_confidence`.
    """
    import nibabel as nib

    from atso_med.data.nifti import save_nifti

    if not 0.5 < float(confidence) < 1.0:
        raise ConfigError(f"pseudo_label_confidence must be in (0.5, 1), got {confidence!r}")
    num_classes = _vote_classes(classes)
    total = ProbabilitySum()
    for source in sources:
        total.add(_read_probability(source, case_id, num_classes, "uncertain voxels are found from them"), owned=True)
    label_image = nib.load(str(label_file))
    label = np.asarray(label_image.dataobj)
    mean = classes_first(total.total / np.float32(len(sources)), num_classes)
    uncertain = label_confidence(label, mean) < float(confidence)
    save_nifti(uncertain.view(np.uint8), label_image.affine, target, dtype=np.uint8)
    organ = label != 0
    return {
        "voxels": int(label.size),
        "uncertain": int(uncertain.sum()),
        "organ": int(organ.sum()),
        "uncertain_organ": int((uncertain & organ).sum()),
    }


def _vote_classes(classes: Mapping[int, str] | None) -> int | None:
    """The vote's class count: ``None`` for a binary mask (one class is an organ mask)."""
    from atso_med.data.labels import class_names

    names = [] if classes is None else class_names(classes)
    return len(names) if len(names) > 1 else None


def _read_probability(source: str | os.PathLike, case_id: str, num_classes: int | None, why: str) -> np.ndarray:
    """A prediction's probabilities, classes first (C > 1; binary: the volume's shape).

    Raises:
        ConfigError: the file is missing (``why`` says what needs it).
    """
    import nibabel as nib

    from atso_med.data.writers import prediction_file

    probability_file = prediction_file(source, case_id, "probability")
    if not probability_file.is_file():
        raise ConfigError(f"{probability_file} is missing: {why}")
    probability = np.asarray(nib.load(str(probability_file)).dataobj, dtype=np.float32)
    if num_classes is not None:
        probability = np.moveaxis(probability, -1, 0)  # the file holds the classes last
    return probability
