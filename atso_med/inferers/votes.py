"""The votes of label maps: a label map of class probabilities, per-class vote counts and their winners.

The pieces :mod:`atso_med.inferers.fusion` builds the plane fusion and the model-set vote from. A
binary mask is the one-class case: its votes are counted without a class axis of its own, its
label map is the 0/1 mask.
"""

from __future__ import annotations

import numpy as np

from atso_med.data.labels import MAX_CLASSES
from atso_med.errors import ConfigError, GridMismatchError, LabelValueError

__all__ = [
    "LabelVotes",
    "ProbabilitySum",
    "check_num_classes",
    "class_labels",
    "classes_first",
    "label_confidence",
    "voter_labels",
]


def check_num_classes(num_classes: int | None) -> int | None:
    """``num_classes`` as an int, or ``None`` (binary).

    Raises:
        ConfigError: a number of classes that is not 1..:data:`~atso_med.data.labels.MAX_CLASSES`.
    """
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ConfigError(f"num_classes must be an integer (or None for a binary mask), got {num_classes!r}")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"num_classes must be 1..{MAX_CLASSES} (or None for a binary mask), got {num_classes!r}")
    return int(num_classes)


def class_labels(probability: np.ndarray, threshold: float) -> np.ndarray:
    """The label map of per-class probabilities: the most probable class among those >= ``threshold``.

    Args:
        probability: float ``(C, *spatial)`` probabilities, class c at index c - 1.
        threshold: probability a class needs to be chosen.

    Returns:
        uint8 label map of the spatial shape: the class (1..C) of highest probability among those
        >= ``threshold`` (the lower class on equal probabilities), 0 where none is.
    """
    if len(probability) == 1:
        return (probability[0] >= threshold).view(np.uint8)  # one class: no argmax, no extra volume
    label = np.zeros(probability.shape[1:], dtype=np.uint8)
    best = np.full(probability.shape[1:], -np.inf, dtype=np.float32)
    for value, class_probability in enumerate(probability, start=1):
        take = (class_probability >= threshold) & (class_probability > best)
        label[take] = value
        np.copyto(best, class_probability, where=take)
    return label


def label_confidence(label: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """How sure the probabilities are of the class a label map names, voxel by voxel.

    Args:
        label: a label map (values ``0..C``; a binary mask is ``C = 1``).
        probability: float ``(C, *spatial)`` probabilities, class c at index c - 1.

    At background voxels it is ``1 -`` the sum of the class probabilities (at least 0): the
    background's probability under a softmax head, and under independent sigmoids the least
    probability of "no class here" that the class probabilities allow (``P(any) <= sum``), so a
    background voxel counts as sure only when the classes are unlikely together. (``1 -`` the
    highest class probability, the most that probability can be, would call a voxel where two
    organs each reach 0.45 a sure background voxel.)

    Returns:
        float32 of the label's shape: the probability of the named class, and at background
        voxels ``max(0, 1 - sum)`` of the class probabilities (for one class: ``1 - p``).

    Raises:
        GridMismatchError: probabilities of another spatial shape.
        LabelValueError: a label value above C.
    """
    label = np.asarray(label)
    if probability.shape[1:] != label.shape:
        raise GridMismatchError(f"label shape {label.shape} does not match probability shape {probability.shape}")
    if label.size and int(label.max()) > len(probability):
        raise LabelValueError(f"a label map of {len(probability)} classes holds values 0..{len(probability)} only")
    confidence = np.clip(1.0 - probability.sum(axis=0, dtype=np.float32), 0.0, None)
    for value, class_probability in enumerate(probability, start=1):
        np.copyto(confidence, class_probability, where=label == value, casting="unsafe")
    return confidence


def voter_labels(label: np.ndarray, num_classes: int | None) -> np.ndarray:
    """A voter's label map as :class:`LabelVotes` counts it: binary masks as 0/1, others checked to hold 0..C."""
    if num_classes is None:
        return label != 0
    if label.size and not 0 <= int(label.min()) <= int(label.max()) <= num_classes:
        raise LabelValueError(f"a label map of {num_classes} classes holds values 0..{num_classes} only")
    return label


class LabelVotes:
    """Per-class vote counts of label maps, and the rule that turns them into one label map.

    Args:
        num_classes: C (``None``: binary, one class).
        dtype: the counts' integer type (the number of voters it holds).
    """

    def __init__(self, num_classes: int | None, dtype: type) -> None:
        self.num_classes = num_classes or 1
        self.dtype = dtype
        self.count = 0
        self._votes: np.ndarray | None = None

    def add(self, label: np.ndarray) -> None:
        """Counts one label map's votes: values 0..C (bool or 0/1 for one class)."""
        if self._votes is None:
            self._votes = np.zeros((self.num_classes, *label.shape), dtype=self.dtype)
        elif label.shape != self._votes.shape[1:]:
            raise GridMismatchError(f"label maps differ in shape: {label.shape} vs {self._votes.shape[1:]}")
        if self.count == np.iinfo(self.dtype).max:
            raise ConfigError(f"more than {self.count} label maps to vote")
        if self.num_classes == 1:
            self._votes[0] += label  # no comparison: no volume-sized temporary
        else:
            for value in range(1, self.num_classes + 1):
                self._votes[value - 1] += label == value
        self.count += 1

    def decide(self, mean: np.ndarray | None, tie_threshold: float | None) -> np.ndarray:
        """The winners' label map: more than half of the votes, or a tie broken by ``mean``.

        Args:
            mean: per-class mean probability ``(C, *spatial)``; needed for ties only.
            tie_threshold: mean probability at which a class with half of the votes beats
                background; ``None``: background keeps such a voxel.

        Raises:
            ConfigError: an even vote that may tie, without probabilities.
        """
        half = self.count // 2
        label = np.zeros(self._votes.shape[1:], dtype=np.uint8)
        for value, votes in enumerate(self._votes, start=1):
            label[votes > half] = value  # a strict majority: one class at most
        if self.count % 2 or (tie_threshold is None and len(self._votes) == 1):
            return label  # no tie can change the label map
        if mean is None:
            raise ConfigError("an even vote breaks ties with the mean probabilities, and none were given")
        # Half of the votes: at most two classes hold them; the higher mean probability wins.
        tied = np.zeros(label.shape, dtype=np.uint8)
        best = np.zeros(label.shape, dtype=np.uint8)
        best_mean = np.full(label.shape, -np.inf, dtype=np.float32)
        for value, (votes, class_mean) in enumerate(zip(self._votes, mean, strict=True), start=1):
            tie = votes == half
            tied += tie
            better = tie & (class_mean > best_mean)
            best[better] = value
            np.copyto(best_mean, class_mean, where=better)
        won = tied == 2
        if tie_threshold is not None:
            won |= (tied == 1) & (best_mean >= tie_threshold)
        label[won] = best[won]
        return label


class ProbabilitySum:
    """Running float32 sum of probability arrays of one shape."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None

    def add(self, probability: np.ndarray, owned: bool) -> None:
        """Adds float32 ``probability``; ``owned``: the first may become the sum itself, not a copy."""
        if self.total is None:
            self.total = probability if owned else np.array(probability, dtype=np.float32, copy=True)
        elif probability.shape != self.total.shape:
            raise GridMismatchError(f"probabilities differ in shape: {probability.shape} vs {self.total.shape}")
        else:
            self.total += probability


def classes_first(array: np.ndarray, num_classes: int | None) -> np.ndarray:
    """A view of ``array`` with its class axis first: a binary array gets one of length 1."""
    return array[np.newaxis] if num_classes is None else array
