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
