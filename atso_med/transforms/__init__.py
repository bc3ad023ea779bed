"""atso_med.transforms: CT loading, HU windowing, tri-view (3-slice stack) sampling and stack augmentation."""

from atso_med.transforms.augment import stack_augmentation
from atso_med.transforms.intensity import HUWindow, HUWindowd, HUWindowD, HUWindowDict
from atso_med.transforms.io import LoadCTd, load_canonical
from atso_med.transforms.prediction import PredictionPostprocessing, PredictionPreprocessing
from atso_med.transforms.preprocessing import CTPreprocessingd, optional_spacing_mm
from atso_med.transforms.spacing import (
    LongAxisSpacing,
    LongAxisSpacingd,
    LongAxisSpacingD,
    LongAxisSpacingDict,
    long_axis_slices,
    resample_long_axis,
)
from atso_med.transforms.triview import (
    PLANES,
    SliceStack,
    SliceStackd,
    SliceStackD,
    SliceStackDict,
    StackAccumulator,
    iter_stacks,
    plane_axis,
    positive_slice_filter,
    slice_pixel_counts,
    slice_stack,
    stacks_to_volume,
)

__all__ = [
    "CTPreprocessingd",
    "optional_spacing_mm",
    "PredictionPreprocessing",
    "PredictionPostprocessing",
    "LoadCTd",
    "load_canonical",
    "HUWindow",
    "HUWindowd",
    "HUWindowD",
    "HUWindowDict",
    "PLANES",
    "plane_axis",
    "slice_stack",
    "SliceStack",
    "SliceStackd",
    "SliceStackD",
    "SliceStackDict",
    "iter_stacks",
    "StackAccumulator",
    "stacks_to_volume",
    "slice_pixel_counts",
    "positive_slice_filter",
    "LongAxisSpacing",
    "LongAxisSpacingd",
    "LongAxisSpacingD",
    "LongAxisSpacingDict",
    "long_axis_slices",
    "resample_long_axis",
    "stack_augmentation",
]
