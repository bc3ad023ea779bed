"""atso_med.transforms: CT loading, HU windowing, tri-view (3-slice stack) sampling and stack augmentation."""

from atso_med.data.slices import PLANES, iter_stacks, plane_axis, positive_slice_filter, slice_pixel_counts, slice_stack
from atso_med.transforms.augment import stack_augmentation
from atso_med.transforms.case_loading import LoadCTd, load_canonical
from atso_med.transforms.intensity import HU_WINDOW, HUWindow, HUWindowD, HUWindowd, HUWindowDict
from atso_med.transforms.prediction_io import PredictionPostprocessing, PredictionPreprocessing
from atso_med.transforms.preprocessing import CTPreprocessingd, optional_spacing_mm
from atso_med.transforms.spacing import (
    LongAxisSpacing,
    LongAxisSpacingD,
    LongAxisSpacingd,
    LongAxisSpacingDict,
    long_axis_slices,
    resample_long_axis,
)
from atso_med.transforms.triview import (
    SliceStack,
    SliceStackD,
    SliceStackd,
    SliceStackDict,
    StackAccumulator,
    stacks_to_volume,
)

__all__ = [
    "HU_WINDOW",
    "PLANES",
    "CTPreprocessingd",
    "HUWindow",
    "HUWindowD",
    "HUWindowDict",
    "HUWindowd",
    "LoadCTd",
    "LongAxisSpacing",
    "LongAxisSpacingD",
    "LongAxisSpacingDict",
    "LongAxisSpacingd",
    "PredictionPostprocessing",
    "PredictionPreprocessing",
    "SliceStack",
    "SliceStackD",
    "SliceStackDict",
    "SliceStackd",
    "StackAccumulator",
    "iter_stacks",
    "load_canonical",
    "long_axis_slices",
    "optional_spacing_mm",
    "plane_axis",
    "positive_slice_filter",
    "resample_long_axis",
    "slice_pixel_counts",
    "slice_stack",
    "stack_augmentation",
    "stacks_to_volume",
]
