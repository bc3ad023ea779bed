"""Synthetic CT DICOM series for tests: tiny uncompressed slices with the geometry a test asks for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

SIZE = 8


def make_slice(
    position,
    orientation=(1, 0, 0, 0, 1, 0),
    pixels=None,
    series_uid="1.2.826.0.1.3680043.8.498.1",
    description="synthetic",
    slope=1.0,
    intercept=-1024.0,
    instance=1,
    modality="CT",
    decimals=6,
) -> Dataset:
    """A tiny uncompressed CT slice (8x8 uint16) with the given geometry (positions written with ``decimals``)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.100"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesDescription = description
    ds.Modality = modality
    ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = [f"{float(v):.{decimals}f}" for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [f"{float(v):.6f}" for v in orientation]
    ds.PixelSpacing = [0.5, 0.75]  # (between rows, between columns): deliberately unequal
    ds.SliceThickness = 5  # deliberately unlike the position spacing
    ds.Rows = SIZE
    ds.Columns = SIZE
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.RescaleSlope = slope
    ds.RescaleIntercept = intercept
    if pixels is None:
        pixels = np.full((SIZE, SIZE), 1000, dtype=np.uint16)
    ds.PixelData = np.asarray(pixels, dtype=np.uint16).tobytes()
    return ds


def write_series(folder: Path, positions, prefix="s", **kwargs) -> list[Path]:
    """Write one slice per position; pixel (row r, column c) of slice n stores 1000 + 100 n + 8 r + c."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    for n, position in enumerate(positions):
        pixels = 1000 + 100 * n + SIZE * rows + cols
        ds = make_slice(position, pixels=pixels, instance=n + 1, **kwargs)
        path = folder / f"{prefix}{n:03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def axial(zs):
    return [(-10.0, -20.0, z) for z in zs]
