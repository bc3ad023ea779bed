"""Training and inference see the same network input: one preprocessing, proven on real CT.

The bundle's ``train.json`` ``preprocessing`` and the inferer's :class:`PredictionPreprocessing` are
fed the same case; the image arrays must be identical bit for bit, and so must the label and the
geometry, with and without long-axis resampling (where the order of resampling and windowing
changes the values), for a NIfTI case and for a DICOM case picked out of a two-series folder.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from bundle_files import TRAIN
from monai.bundle import ConfigParser
from pydicom.uid import generate_uid

from atso_med.data.readers import load_image
from atso_med.transforms.prediction_io import PredictionPreprocessing

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real"
NIFTI_CT = REAL / "totalseg_ct3mm" / "ct_3mm_upperabd_30sl.nii.gz"
NIFTI_LABEL = REAL / "totalseg_ct3mm" / "DERIVED_pancreas_mask_pseudo_upperabd_30sl.nii.gz"
DICOM20 = REAL / "totalseg_ct_dicom20" / "dicom"


def training_preprocessing(long_axis_spacing):
    parser = ConfigParser()
    parser.read_config(TRAIN)
    parser["long_axis_spacing"] = long_axis_spacing
    return parser.get_parsed_content("preprocessing")


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory) -> dict:
    """The real 20-slice series beside a second series (same pixels, 200 HU brighter) in one folder."""
    folder = tmp_path_factory.mktemp("two_series")
    second_uid = generate_uid()
    for path in sorted(DICOM20.iterdir()):
        ds = pydicom.dcmread(path)
        ds.save_as(folder / f"a_{path.name}", enforce_file_format=True)
        ds.SeriesInstanceUID, ds.SOPInstanceUID = second_uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.RescaleIntercept = float(ds.RescaleIntercept) + 200
        ds.save_as(folder / f"b_{path.name}", enforce_file_format=True)
    volume = load_image(folder, series_uid=second_uid)
    label = np.zeros(volume.shape, np.uint8)
    label[200:300, 220:320, 5:15] = 1
    label_path = folder.parent / "dicom_label.nii.gz"
    nib.save(nib.Nifti1Image(label, volume.affine), label_path)
    return {"image": str(folder), "series_uid": second_uid, "label": str(label_path)}


@pytest.mark.parametrize("long_axis_spacing", [None, 1.3])
@pytest.mark.parametrize("source", ["nifti", "dicom"])
def test_training_and_inference_give_identical_network_input(source, long_axis_spacing, dicom_case):
    item = dicom_case if source == "dicom" else {"image": str(NIFTI_CT), "label": str(NIFTI_LABEL)}
    item = {"id": "case", **item}
    if long_axis_spacing is not None and source == "nifti":
        long_axis_spacing = 2.2  # 3 mm slices: a real resampling

    trained_on = training_preprocessing(long_axis_spacing)(dict(item))
    tested_on = PredictionPreprocessing(long_axis_spacing=long_axis_spacing, with_truth=True)(dict(item))

    assert trained_on["image"].dtype == tested_on["image"].dtype == np.float32
    np.testing.assert_array_equal(trained_on["image"], tested_on["image"])
    np.testing.assert_array_equal(trained_on["label"], tested_on["truth"])
    np.testing.assert_array_equal(
        trained_on["image_meta"]["canonical_affine"], tested_on["image_meta"]["canonical_affine"]
    )
    assert trained_on["label"].any() and 0 < trained_on["image"].mean() < 1
    resampled = "long_axis_spacing" in trained_on["image_meta"]
    assert resampled == (long_axis_spacing is not None)
    if resampled:  # the original-grid mask (the written prediction's DSC) is the label as stored
        stored = np.asarray(nib.load(item["label"]).dataobj) != 0
        assert tested_on["label"].shape == stored.shape and tested_on["label"].sum() == stored.sum()


def test_series_uid_picks_the_series_in_training_too(dicom_case):
    """The series a data-list item names is the one trained on (the second is 200 HU brighter)."""
    first_uid = pydicom.dcmread(next(DICOM20.iterdir()), stop_before_pixels=True).SeriesInstanceUID
    second = training_preprocessing(None)(dict(dicom_case))
    first = training_preprocessing(None)({**dicom_case, "series_uid": first_uid})
    assert second["image"].mean() > first["image"].mean() + 0.05
