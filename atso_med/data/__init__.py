"""Data: the dataset contract, splits, CT readers, verification, training samples and the synthetic phantom."""

from atso_med.data.class_selection import ClassSelection, class_group_indices, select_classes
from atso_med.data.datalist import datalist_class_selection, datalist_classes, read_datalist, write_datalist
from atso_med.data.dataset import Case, Dataset, evaluation_datalist, load_case
from atso_med.data.dataset_from_folders import build_dataset
from atso_med.data.dicom import DicomSeriesInfo, list_dicom_series, read_dicom_series, select_series
from atso_med.data.inputs import resolve_inputs
from atso_med.data.labels import binarize_label, check_label_values, load_label_mask
from atso_med.data.nifti import save_nifti
from atso_med.data.nih_pancreas import import_nih_pancreas
from atso_med.data.phantom import PhantomConfig, make_phantom_case, write_phantom_dataset
from atso_med.data.readers import load_image, load_label, reorient_from_canonical, reorient_to_canonical
from atso_med.data.slices import SliceStackDataset, training_sampler
from atso_med.data.split_protocols import make_splits, nih4fold_splits
from atso_med.data.splits import Splits
from atso_med.data.verify import VerifyReport, verify_dataset
from atso_med.data.volume import Volume
from atso_med.data.writers import write_prediction, write_seg_nrrd

__all__ = [
    "Case",
    "ClassSelection",
    "Dataset",
    "DicomSeriesInfo",
    "PhantomConfig",
    "SliceStackDataset",
    "Splits",
    "VerifyReport",
    "Volume",
    "binarize_label",
    "build_dataset",
    "check_label_values",
    "class_group_indices",
    "datalist_class_selection",
    "datalist_classes",
    "evaluation_datalist",
    "import_nih_pancreas",
    "list_dicom_series",
    "load_case",
    "load_image",
    "load_label",
    "load_label_mask",
    "make_phantom_case",
    "make_splits",
    "nih4fold_splits",
    "read_datalist",
    "read_dicom_series",
    "reorient_from_canonical",
    "reorient_to_canonical",
    "resolve_inputs",
    "save_nifti",
    "select_classes",
    "select_series",
    "training_sampler",
    "verify_dataset",
    "write_datalist",
    "write_phantom_dataset",
    "write_prediction",
    "write_seg_nrrd",
]
