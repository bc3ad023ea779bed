"""Exceptions raised by atso-med.

Every error a user can cause by bad input derives from :class:`AtsoMedError`, so that the
command line can print its message and exit non-zero without a traceback.
"""

from __future__ import annotations


class AtsoMedError(Exception):
    """Base class of every error caused by input, configuration or data."""


class ImageReadError(AtsoMedError):
    """An image or label file is missing, unreadable, corrupt or not a usable 3D volume."""


class DicomSeriesError(ImageReadError):
    """A DICOM folder does not hold exactly one usable, evenly spaced, untilted CT series."""


class GridMismatchError(AtsoMedError):
    """Two volumes (image and label, prediction and truth) do not share one voxel grid in world space."""


class LabelValueError(AtsoMedError):
    """A label holds values that are not integers or not among the declared classes."""


class DatasetError(AtsoMedError):
    """A dataset.json is malformed: bad keys, duplicate ids, missing files."""


class SplitError(AtsoMedError):
    """A splits.json is malformed or inconsistent with its dataset."""


class ConfigError(AtsoMedError):
    """A configuration value is unknown, missing or out of range."""


class CaseFailuresError(AtsoMedError):
    """Some cases of a multi-case run failed while the others ran to the end.

    Attributes:
        failures: ``(case id, message)`` of every failed case, in input order.
        results: the per-case records of the whole run (``status`` ``"failed"`` for these).
    """

    def __init__(
        self, failures: list[tuple[str, str]], results: list[dict] | None = None, total: int | None = None
    ) -> None:
        self.failures = list(failures)
        self.results = list(results or [])
        total = len(self.results) if total is None else total
        lines = "\n  ".join(f"{case_id}: {message}" for case_id, message in self.failures)
        super().__init__(f"{len(self.failures)} of {total} case(s) failed:\n  {lines}")


def input_error_cause(error: BaseException) -> AtsoMedError | None:
    """The :class:`AtsoMedError` an exception is or was caused by, or ``None``.

    MONAI wraps what a transform or a config expression raises in a ``RuntimeError`` whose
    cause chain holds the real error; the user needs the real error's message.
    """
    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, AtsoMedError):
        cause = cause.__cause__
    return cause
