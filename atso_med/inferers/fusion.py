"""Fusion: the planes of one model set into one mask, and several model sets into one by vote.

Plane fusion (:func:`fuse_planes`, streamed by :class:`PlaneFusion` inside the coarse-to-fine
inferer):

* ``"majority"``: a voxel is organ when more than half of the planes' masks
  (probability >= threshold) say so: 2 of 3 planes, both of 2 planes, the single plane of 1.
* ``"mean"``: the mean of the planes' probabilities >= threshold (what the reference code does).

Model-set vote (:func:`ensemble_vote`; :func:`vote_files` for masks already written, as ATSO's
pseudo labels of several teachers are): a voxel is organ when more than half of the sets' masks say
so; with an even number of sets a tie is broken by the sets' mean probability >= 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atso_med.errors import ConfigError, GridMismatchError

__all__ = ["FUSIONS", "PlaneFusion", "VoteAccumulator", "ensemble_vote", "fuse_planes", "vote_files"]

#: Plane fusion rules understood by :func:`fuse_planes` and the inference configuration.
FUSIONS = ("majority", "mean")


class PlaneFusion:
    """Streams plane probability volumes into the fused mean and mask.

    Holds one float32 sum (and one uint8 vote count for the majority rule), so planes can be
    released as soon as they are added.
    """

    def __init__(self, fusion: str, threshold: float) -> None:
        if fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if not 0.0 < float(threshold) < 1.0:
            raise ConfigError(f"threshold must be in (0, 1), got {threshold!r}")
        self.fusion = fusion
        self.threshold = float(threshold)
        self.count = 0
        self._sum: np.ndarray | None = None
        self._votes: np.ndarray | None = None

    def add(self, probability: np.ndarray, owned: bool = False) -> None:
        """Adds one plane's float32 probabilities; ``owned`` lets the first one be reused as the sum."""
        if self._sum is None:
            self._sum = probability if owned else np.array(probability, dtype=np.float32, copy=True)
        else:
            if probability.shape != self._sum.shape:
                raise GridMismatchError(
                    f"plane probabilities differ in shape: {probability.shape} vs {self._sum.shape}"
                )
            self._sum += probability
        if self.fusion == "majority":
            vote = probability >= self.threshold
            if self._votes is None:
                self._votes = vote.astype(np.uint8)
            else:
                self._votes += vote
        self.count += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mask uint8, mean probability float32)``; the sum is turned into the mean in place."""
        if self._sum is None:
            raise ConfigError("fuse_planes needs at least one plane")
        mean = self._sum
        mean /= np.float32(self.count)
        if self.fusion == "mean":
            mask = (mean >= self.threshold).view(np.uint8)
        else:
            # More than half of the planes: 2 of 3, 2 of 2, 1 of 1.
            mask = (self._votes > self.count // 2).view(np.uint8)  # type: ignore[operator]
        self._sum = self._votes = None
        return mask, mean


def fuse_planes(probabilities: Sequence[np.ndarray], fusion: str = "majority", threshold: float = 0.5) -> np.ndarray:
    """Fuses the probability volumes of the planes (1 to 3 for RSTN) into one binary mask.

    Args:
        probabilities: one float probability volume per plane, all of one shape.
        fusion: ``"majority"``: organ where more than half of the planes have probability >=
            ``threshold`` (2 of 3; with 2 planes both must agree; 1 plane: itself).
            ``"mean"``: organ where the mean probability >= ``threshold``.
        threshold: probability threshold in (0, 1).

    Returns:
        uint8 (0/1) mask of the volumes' shape.

    Raises:
        ConfigError: on an unknown rule, a threshold out of range, or no volume.
        GridMismatchError: if the volumes differ in shape.
    """
    fuser = PlaneFusion(fusion, threshold)
    for probability in probabilities:
        fuser.add(np.asarray(probability, dtype=np.float32))
    return fuser.result()[0]


class VoteAccumulator:
    """Streams model sets' masks and probabilities into the ensemble vote (one set in memory at a time)."""

    def __init__(self, tie_threshold: float = 0.5) -> None:
        self.tie_threshold = float(tie_threshold)
        self.count = 0
        self._votes: np.ndarray | None = None
        self._sum: np.ndarray | None = None

    def add(self, mask: np.ndarray, probability: np.ndarray) -> None:
        mask, probability = np.asarray(mask), np.asarray(probability, dtype=np.float32)
        if mask.shape != probability.shape:
            raise GridMismatchError(f"mask shape {mask.shape} differs from probability shape {probability.shape}")
        if self._votes is None:
            self._votes = (mask != 0).astype(np.uint16)
            self._sum = probability.copy()
        else:
            if mask.shape != self._votes.shape:
                raise GridMismatchError(f"model sets disagree in shape: {mask.shape} vs {self._votes.shape}")
            self._votes += mask != 0
            self._sum += probability
        self.count += 1

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if self._votes is None or self._sum is None:
            raise ConfigError("ensemble_vote needs at least one model set")
        n = self.count
        mean = self._sum / np.float32(n)
        organ = 2 * self._votes.astype(np.int32) > n
        if n % 2 == 0:
            # A tie (half the sets each way) is decided by the sets' mean probability.
            organ |= (2 * self._votes.astype(np.int32) == n) & (mean >= self.tie_threshold)
        return organ.astype(np.uint8), mean.astype(np.float32, copy=False)


def ensemble_vote(
    masks: Sequence[np.ndarray], probabilities: Sequence[np.ndarray], tie_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse the predictions of several model sets.

    A voxel is organ when more than half of the masks say so; with an even number of sets, a voxel
    with exactly half the votes is organ when the mean probability is >= ``tie_threshold``.

    Args:
        masks: one binary mask per set (non-zero = organ), all of one shape.
        probabilities: the matching probability maps.
        tie_threshold: mean probability that breaks a tie.

    Returns:
        ``(mask uint8, mean probability float32)``.

    Raises:
        ConfigError: no set, or counts that differ.
        GridMismatchError: shapes that differ.
    """
    if len(masks) != len(probabilities):
        raise ConfigError(f"{len(masks)} masks but {len(probabilities)} probability maps")
    vote = VoteAccumulator(tie_threshold)
    for mask, probability in zip(masks, probabilities, strict=True):
        vote.add(mask, probability)
    return vote.result()


def vote_files(sources: Sequence[Path], case_id: str, target: Path) -> Path:
    """Majority vote of several model sets' masks of one case (ties: mean probability >= 0.5).

    The rule is :func:`ensemble_vote`'s, applied to the masks written on the image's grid; an even
    number of sets needs their ``<id>_probability.nii.gz`` files.

    Raises:
        ConfigError: a probability file an even vote needs is missing.
    """
    import nibabel as nib

    from atso_med.data.nifti import save_nifti
    from atso_med.data.writers import prediction_file

    masks, probabilities, affine = [], [], None
    for source in sources:
        image = nib.load(str(prediction_file(source, case_id)))
        affine = image.affine if affine is None else affine
        mask = np.asarray(image.dataobj) != 0
        masks.append(mask)
        probability_file = prediction_file(source, case_id, "probability")
        if len(sources) % 2 == 0:
            if not probability_file.is_file():
                raise ConfigError(f"{probability_file} is missing: an even vote breaks ties with the probabilities")
            probabilities.append(np.asarray(nib.load(str(probability_file)).dataobj, dtype=np.float32))
        else:
            probabilities.append(mask.astype(np.float32))  # an odd vote has no tie
    fused, _ = ensemble_vote(masks, probabilities)
    return save_nifti(fused, affine, target, dtype=np.uint8)
