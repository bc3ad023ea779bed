"""Predictions open aligned in 3D Slicer: ITK (what Slicer reads NIfTI with) sees the input's exact geometry.

For a phantom NIfTI, a real 3 mm CT NIfTI and a real DICOM series, the written mask (and the
probability map and ``.seg.nrrd``) has the input's origin, spacing, direction and size when read
with ``itk.imread``. Writing a known label as if it were a prediction - through the same
preprocessing, inverse reorientation and writer - gives it back voxel for voxel.
"""

from __future__ import annotations

from pathlib import Path

import itk
import nibabel as nib
import numpy as np
import pytest
import torch

from atso_med.data.dataset import Dataset
from atso_med.data.nifti import save_nifti
from atso_med.data.readers import load_image, load_label, reorient_to_canonical
from atso_med.data.volume import Volume
from atso_med.engines.prediction_folder import PredictionEngine
from atso_med.inferers.coarse_to_fine import InferenceConfig
from atso_med.networks import build_rstn
from atso_med.prediction import predict_case
from atso_med.transforms.prediction_io import PredictionPreprocessing

REAL = Path(__file__).resolve().parent / "data" / "real"
CT3MM = REAL / "totalseg_ct3mm" / "ct_3mm_upperabd_30sl.nii.gz"
CT3MM_MASK = REAL / "totalseg_ct3mm" / "DERIVED_pancreas_mask_pseudo_upperabd_30sl.nii.gz"
DICOM = REAL / "totalseg_ct_dicom20" / "dicom"
DICOM_MASK = REAL / "totalseg_ct_dicom20" / "DERIVED_pancreas_mask_pseudo.nii.gz"
FAST = InferenceConfig(rounds=0, batch_size=32)


def itk_geometry(path: Path) -> dict:
    image = itk.imread(str(path))
    return {
        "origin": np.array(image.GetOrigin(), dtype=np.float64),
        "spacing": np.array(image.GetSpacing(), dtype=np.float64),
        "direction": np.array(itk.array_from_matrix(image.GetDirection()), dtype=np.float64),
        "size": tuple(int(s) for s in image.GetLargestPossibleRegion().GetSize()),
    }


def assert_same_geometry(written: Path, source: Path, atol: float = 1e-4) -> None:
    got, expected = itk_geometry(written), itk_geometry(source)
    assert got["size"] == expected["size"]
    np.testing.assert_allclose(got["origin"], expected["origin"], atol=atol)
    np.testing.assert_allclose(got["spacing"], expected["spacing"], atol=atol)
    np.testing.assert_allclose(got["direction"], expected["direction"], atol=1e-6)


def assert_slicer_header(path: Path, affine: np.ndarray) -> None:
    image = nib.load(str(path))
    header = image.header
    assert int(header["qform_code"]) == 1 and int(header["sform_code"]) == 1
    np.testing.assert_allclose(image.get_qform(), image.get_sform(), atol=1e-4)
    np.testing.assert_allclose(image.affine, affine, atol=1e-5)


@pytest.fixture(scope="module")
def z_model(tmp_path_factory) -> Path:
    """A tiny random plane-Z model file, as the train bundle exports it."""
    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("models") / "plane_Z" / "model.pt"
    path.parent.mkdir(parents=True)
    torch.save({"network": build_rstn("tiny").state_dict(), "config": {"plane": "Z", "preset": "tiny"}}, path)
    return path


@pytest.fixture(scope="module")
def phantom(phantom_dataset) -> Dataset:
    return Dataset.load(phantom_dataset(cases=1))


class KnownLabelInferer:
    """Stands in for the network: returns a known canonical label as the prediction."""

    def __init__(self, canonical_label: np.ndarray) -> None:
        self.label = canonical_label

    def __call__(self, image: np.ndarray, truth=None) -> dict:
        assert image.shape == self.label.shape  # the label must be on the inferer's grid
        return {"mask": self.label, "probability": self.label.astype(np.float32), "sets": []}


def write_known_label(
    image: Path, label: Path, out: Path, case_id: str = "case", save_probability: bool = False
) -> tuple[Path, np.ndarray]:
    """Write ``label`` as the prediction of ``image`` through the engine; return the file and the expected voxels."""
    volume = load_image(image)
    expected = load_label(label, volume)
    canonical, _ = reorient_to_canonical(Volume(expected.astype(np.uint8), volume.affine))
    engine = PredictionEngine(
        [{"id": case_id, "image": str(image)}],
        KnownLabelInferer(np.ascontiguousarray(canonical.array)),
        output_dir=out,
        save_probability=save_probability,
        preprocessing=PredictionPreprocessing(),
    )
    [stats] = engine.run()
    return Path(stats["output"]), expected


def test_phantom_prediction_has_the_input_geometry_in_itk(phantom, z_model, tmp_path):
    image = phantom.cases[0].image
    out = tmp_path / "out"
    stats = predict_case(
        image,
        {"Z": z_model},
        out / "mask.nii.gz",
        FAST,
        "cpu",
        probability_path=out / "probability.nii.gz",
        seg_nrrd_path=out / "mask.seg.nrrd",
    )
    affine = load_image(image).affine
    for written in ("mask.nii.gz", "probability.nii.gz", "mask.seg.nrrd"):
        assert_same_geometry(out / written, image)
    assert_slicer_header(out / "mask.nii.gz", affine)
    mask = nib.load(str(out / "mask.nii.gz"))
    assert mask.get_data_dtype() == np.uint8 and set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}
    assert nib.load(str(out / "probability.nii.gz")).get_data_dtype() == np.float32
    assert stats["voxels"] == int(np.count_nonzero(np.asarray(mask.dataobj)))

    # The Slicer segmentation holds the same voxels, named and coloured.
    import slicerio

    segmentation = slicerio.read_segmentation(str(out / "mask.seg.nrrd"))
    assert slicerio.segment_names(segmentation) == ["pancreas"]
    segment = slicerio.segment_mask(segmentation, segmentation["segments"][0])
    np.testing.assert_array_equal(segment != 0, np.asarray(mask.dataobj) != 0)


def test_permuted_axes_nifti_round_trips_a_known_label(phantom, tmp_path):
    """An image stored with permuted axes (not just flips) gets its label back on its own axes."""
    source = load_image(phantom.cases[0].image)
    label = load_label(phantom.cases[0].label, source)
    order = (2, 0, 1)
    affine = source.affine.copy()
    affine[:, :3] = source.affine[:, list(order)]
    image_path, label_path = tmp_path / "permuted.nii.gz", tmp_path / "permuted_label.nii.gz"
    save_nifti(np.transpose(source.array, order), affine, image_path, dtype=np.int16)
    save_nifti(np.transpose(label, order), affine, label_path, dtype=np.uint8)
    assert load_image(image_path).orientation not in ("RAS", "LPS")

    written, expected = write_known_label(image_path, label_path, tmp_path / "out", save_probability=True)
    np.testing.assert_array_equal(np.asarray(nib.load(str(written)).dataobj), expected)
    np.testing.assert_array_equal(expected, np.transpose(label, order))
    assert_same_geometry(written, image_path)
    assert_same_geometry(tmp_path / "out" / "case_probability.nii.gz", image_path)
    assert_slicer_header(written, affine)


def test_real_ct_nifti_prediction_and_known_label(z_model, tmp_path):
    # Real network path, with the long axis resampled (3 mm -> 2 mm) and inverted on the way out.
    out = tmp_path / "net"
    config = InferenceConfig(rounds=0, batch_size=64)
    stats = predict_case(CT3MM, {"Z": z_model}, out / "ct.nii.gz", config, "cpu", long_axis_spacing=2.0)
    assert stats["long_axis_spacing"]["slices"] != stats["long_axis_spacing"]["original_slices"]
    assert_same_geometry(out / "ct.nii.gz", CT3MM)
    assert_slicer_header(out / "ct.nii.gz", load_image(CT3MM).affine)

    written, expected = write_known_label(CT3MM, CT3MM_MASK, tmp_path / "label")
    assert np.count_nonzero(expected) > 0
    np.testing.assert_array_equal(np.asarray(nib.load(str(written)).dataobj), expected)
    assert_same_geometry(written, CT3MM)


def test_dicom_series_known_label_comes_back_voxel_for_voxel_with_the_dicom_geometry(tmp_path):
    """The LAS-stored pancreas mask on the LPS DICOM grid: canonicalised, written back, identical."""
    dicom = load_image(DICOM)
    assert dicom.shape == (512, 512, 20)
    # A real cross-orientation case: the mask is stored LAS, the series is LPS.
    assert "".join(nib.aff2axcodes(nib.load(str(DICOM_MASK)).affine)) != dicom.orientation

    written, expected = write_known_label(DICOM, DICOM_MASK, tmp_path / "out")
    np.testing.assert_array_equal(expected, load_label(DICOM_MASK, dicom))
    out = nib.load(str(written))
    assert out.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(out.dataobj), expected)
    assert np.count_nonzero(expected) > 0
    assert_slicer_header(written, dicom.affine)
    # ITK reads the DICOM series itself and our NIfTI to the same geometry.
    assert_same_geometry(written, DICOM)
