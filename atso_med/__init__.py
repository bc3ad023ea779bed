"""atso-med: semi-supervised organ segmentation in CT with ATSO, built on MONAI."""

__version__ = "0.1.0"
