"""Tests of the synthetic abdominal CT phantom, its CLI and the preview pictures."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from atso_med.cli.main import main
from atso_med.data.phantom import (
    TISSUES,
    PhantomConfig,
    best_window_dice,
    case_rng,
    make_phantom_case,
    phantom_status,
    render_phantom_case,
    write_phantom_dataset,
)
from atso_med.errors import ConfigError
from atso_med.visualize import PREVIEW_SIZE, overlay_rgb, save_case_preview

TINY = {"shape": (64, 64, 32)}
# Same anatomy scale as the default (body fills the field of view), fewer voxels.
SMALL = {"shape": (80, 80, 40), "spacing": (2.4, 2.4, 4.0)}


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _interior(mask: np.ndarray) -> np.ndarray:
    """Voxels of a class away from its border, where partial volume does not reach."""
    return ndimage.binary_erosion(mask)


# --------------------------------------------------------------------------------------------
# Files and determinism
# --------------------------------------------------------------------------------------------


def test_dataset_files_headers_and_json(tmp_path):
    config = PhantomConfig(cases=3, seed=5, **TINY)
    path = write_phantom_dataset(tmp_path / "ph", config)
    assert path == tmp_path / "ph" / "dataset.json"
    data = json.loads(path.read_text())
    assert data["labels"] == {"0": "background", "1": "pancreas"}
    assert data["name"] and data["description"]
    assert data["cases"] == [
        {"id": f"case_{k:03d}", "image": f"imagesTr/case_{k:03d}.nii.gz", "label": f"labelsTr/case_{k:03d}.nii.gz"}
        for k in range(3)
    ]
    phantom = data["phantom"]
    assert (phantom["seed"], phantom["domain"], phantom["cases"], phantom["shape"]) == (5, "source", 3, [64, 64, 32])
    assert phantom == config.to_dict()
    assert not (tmp_path / "ph" / ".phantom-in-progress.json").exists()
    for entry in data["cases"]:
        image = nib.load(str(path.parent / entry["image"]))
        label = nib.load(str(path.parent / entry["label"]))
        assert image.get_data_dtype() == np.int16
        assert label.get_data_dtype() == np.uint8
        assert image.shape == label.shape and image.shape[:2] == (64, 64)
        np.testing.assert_array_equal(image.affine, label.affine)
        for img in (image, label):
            assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
            np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-4)
        # CT-like LPS-ordered axes with axial slices along the last axis.
        assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
        values = np.unique(np.asarray(label.dataobj))
        assert set(values.tolist()) == {0, 1}
        hu = np.asarray(image.dataobj)
        assert hu.min() >= -1024 and hu.max() > 300  # air and bone present


def test_cases_are_deterministic_and_independent_of_case_count(tmp_path):
    config = PhantomConfig(cases=1, seed=11, **TINY)
    a = make_phantom_case(case_rng(11, 2), config, 2)
    b = make_phantom_case(None, config, 2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    other = make_phantom_case(case_rng(12, 2), PhantomConfig(cases=1, seed=12, **TINY), 2)
    assert other[0].shape != a[0].shape or not np.array_equal(other[0], a[0])
    assert not np.array_equal(make_phantom_case(None, config, 1)[0][:, :, :8], a[0][:, :, :8])

    write_phantom_dataset(tmp_path / "two", PhantomConfig(cases=2, seed=11, **TINY))
    write_phantom_dataset(tmp_path / "three", PhantomConfig(cases=3, seed=11, **TINY))
    write_phantom_dataset(tmp_path / "again", PhantomConfig(cases=2, seed=11, **TINY))
    for name in ("imagesTr/case_001.nii.gz", "labelsTr/case_001.nii.gz"):
        same = (tmp_path / "two" / name).read_bytes()
        assert (tmp_path / "three" / name).read_bytes() == same
        assert (tmp_path / "again" / name).read_bytes() == same


def test_config_validation():
    with pytest.raises(ConfigError):
        PhantomConfig(domain="mri")
    with pytest.raises(ConfigError):
        PhantomConfig(cases=0)
    with pytest.raises(ConfigError):
        PhantomConfig(shape=(8, 8, 8))
    with pytest.raises(ConfigError):
        PhantomConfig(spacing=(0.0, 1.0, 1.0))


# --------------------------------------------------------------------------------------------
# Anatomy and intensities
# --------------------------------------------------------------------------------------------

# Expected median HU in the interior of each class (portal-venous source scanner).
SOURCE_HU = {
    "air": (-1010, -950),
    "fat": (-130, -60),
    "muscle": (30, 90),
    "liver": (80, 140),
    "spleen": (85, 160),
    "kidney_cortex": (120, 260),
    "artery": (110, 260),
    "vein": (110, 260),
    "bowel_fluid": (-10, 60),
    "bowel_gas": (-1010, -700),
    "cortical_bone": (500, 1200),
    "cancellous_bone": (120, 400),
    "lung": (-950, -700),
    "gallbladder": (-10, 45),
    "pancreas": (40, 130),
}
REQUIRED = {"air", "fat", "muscle", "liver", "spleen", "kidney_cortex", "artery", "vein", "cortical_bone", "pancreas"}


def test_tissue_hu_plausible_at_default_size():
    config = PhantomConfig(cases=2, seed=0)
    for k in range(2):
        case = render_phantom_case(None, config, k)
        assert case.tissue.shape == case.image.shape
        checked = set()
        for name, (lo, hi) in SOURCE_HU.items():
            inner = _interior(case.tissue == TISSUES[name])
            if inner.sum() < 20:
                continue
            median = float(np.median(case.image[inner]))
            assert lo <= median <= hi, f"case {k}: {name} median {median} HU outside [{lo}, {hi}]"
            checked.add(name)
        assert checked >= REQUIRED, f"case {k}: classes missing: {REQUIRED - checked}"

        # Anatomy in world space (RAS): liver on the patient's right, lungs above the pancreas.
        def world(mask, affine=case.affine):
            return affine[:3, :3] @ np.argwhere(mask).mean(axis=0) + affine[:3, 3]

        liver, spleen = world(case.tissue == TISSUES["liver"]), world(case.tissue == TISSUES["spleen"])
        assert liver[0] > spleen[0]
        assert world(case.tissue == TISSUES["lung"])[2] > world(case.label > 0)[2]
        np.testing.assert_array_equal(case.label, np.isin(case.tissue, [TISSUES["pancreas"], TISSUES["lesion"]]))


def test_pancreas_is_elongated_and_varies():
    config = PhantomConfig(cases=5, seed=3, **SMALL)
    volumes, centres = [], []
    for k in range(5):
        case = render_phantom_case(None, config, k)
        points = np.argwhere(case.label) * np.asarray(case.spacing)
        assert len(points) > 50
        axes = np.sqrt(np.linalg.eigvalsh(np.cov(points.T)))
        assert axes[-1] >= 3.0 * axes[0], f"case {k}: principal axes {axes}"
        volumes.append(len(points) * float(np.prod(case.spacing)))
        # Centre relative to the vertebral bodies (a per-case landmark), in mm.
        spine = np.argwhere(case.tissue == TISSUES["cancellous_bone"]).mean(axis=0)
        centres.append((np.argwhere(case.label).mean(axis=0) - spine)[:2] * np.asarray(case.spacing[:2]))
    volumes = np.array(volumes)
    assert volumes.std() / volumes.mean() > 0.1
    assert np.ptp(np.array(centres), axis=0).max() > 3.0  # mm


def test_best_window_dice_finds_an_isolated_organ():
    image = np.zeros((20, 20, 10), dtype=np.int16)
    label = np.zeros(image.shape, dtype=np.uint8)
    label[5:10, 5:12, 2:6] = 1
    image[label > 0] = 150
    image[0:3] = -500
    dice, (lo, hi) = best_window_dice(image, label)
    assert dice == pytest.approx(1.0)
    assert lo <= 150 < hi and hi - lo <= 300
    image[12:17, 5:12, 2:6] = 150  # a same-sized decoy of the same density halves precision
    assert best_window_dice(image, label)[0] == pytest.approx(2 / 3, abs=1e-6)


@pytest.mark.parametrize("domain", ["source", "shifted"])
def test_fair_no_hu_window_segments_the_pancreas(domain):
    config = PhantomConfig(cases=4, seed=7, domain=domain, shape=(96, 96, 48), spacing=(2.0, 2.0, 3.5))
    for k in range(4):
        case = render_phantom_case(None, config, k)
        body = case.tissue != TISSUES["air"]
        dice, window = best_window_dice(case.image, case.label, body, lo=-300, hi=500, step=5)
        assert dice < 0.5, f"{domain} case {k}: window {window} reaches Dice {dice:.3f}"


def test_shifted_domain_differs_and_has_lesions():
    stats = {}
    for domain in ("source", "shifted"):
        config = PhantomConfig(cases=3, seed=1, domain=domain, **SMALL)
        rows = []
        for k in range(3):
            case = render_phantom_case(None, config, k)
            liver = ndimage.binary_erosion(case.tissue == TISSUES["liver"], iterations=2)
            aorta = _interior(case.tissue == TISSUES["artery"])
            lesion = case.tissue == TISSUES["lesion"]
            rows.append(
                (
                    float(case.image[liver].std()),
                    float(np.median(case.image[liver])),
                    float(np.median(case.image[aorta])),
                    case.spacing[0],
                    int(lesion.sum()),
                )
            )
            if domain == "shifted":
                assert lesion.sum() > 0
                assert np.all(case.label[lesion] == 1)  # lesions are labeled pancreas
                pancreas = _interior(case.tissue == TISSUES["pancreas"])
                assert np.median(case.image[lesion]) < np.median(case.image[pancreas]) - 15
        stats[domain] = np.array(rows)
    src, sh = stats["source"], stats["shifted"]
    assert sh[:, 0].mean() > 1.5 * src[:, 0].mean()  # noisier
    assert sh[:, 1].mean() < src[:, 1].mean() - 5  # liver dimmer in the arterial phase
    assert sh[:, 2].mean() > src[:, 2].mean() + 50  # arteries brighter
    assert sh[:, 3].min() > src[:, 3].max()  # coarser in-plane resolution
    assert src[:, 4].sum() == 0


def test_slice_count_and_spacing_vary_across_cases():
    config = PhantomConfig(cases=6, seed=2, **TINY)
    cases = [make_phantom_case(None, config, k) for k in range(6)]
    depths = {image.shape[2] for image, _, _ in cases}
    z_spacings = {round(float(affine[2, 2]), 3) for _, _, affine in cases}
    xy_spacings = {round(float(-affine[0, 0]), 3) for _, _, affine in cases}
    assert len(depths) > 1 and all(24 <= d <= 40 for d in depths)
    assert len(z_spacings) > 1 and z_spacings <= {2.0, 2.5, 3.0}
    assert len(xy_spacings) > 1
    fixed = PhantomConfig(cases=2, seed=2, vary_geometry=False, **TINY)
    assert {make_phantom_case(None, fixed, k)[0].shape for k in range(2)} == {(64, 64, 32)}


# --------------------------------------------------------------------------------------------
# Writer guard and command line
# --------------------------------------------------------------------------------------------


def test_writer_refuses_foreign_folder_and_finishes_interrupted_run(tmp_path):
    foreign = tmp_path / "user"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    config = PhantomConfig(cases=2, seed=4, **TINY)
    with pytest.raises(ConfigError, match="not empty"):
        write_phantom_dataset(foreign, config)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    out = tmp_path / "ph"

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_phantom_dataset(out, config, progress=interrupt)
    assert phantom_status(out, config) == "partial"
    with pytest.raises(ConfigError):
        phantom_status(out, PhantomConfig(cases=2, seed=5, **TINY))  # someone else's partial run
    first = (out / "imagesTr" / "case_000.nii.gz").stat().st_mtime_ns
    write_phantom_dataset(out, config)
    assert phantom_status(out, config) == "complete"
    assert (out / "imagesTr" / "case_000.nii.gz").stat().st_mtime_ns == first  # kept, not redone
    assert (out / "imagesTr" / "case_001.nii.gz").is_file()


def test_cli_writes_previews_refuses_and_is_a_noop_on_rerun(tmp_path, capsys):
    out, png = tmp_path / "data", tmp_path / "preview.png"
    args = ["phantom", str(out), "--cases", "2", "--seed", "3"]
    args += ["--shape", "64", "64", "32", "--spacing", "3", "3", "5"]
    assert main([*args, "--preview", str(png)]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and " s" in printed
    data = json.loads((out / "dataset.json").read_text())
    assert len(data["cases"]) == 2 and data["phantom"]["spacing"] == [3.0, 3.0, 5.0]
    assert _png_size(png) == PREVIEW_SIZE
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    assert main(args) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    assert main([*args[:3], "3", *args[4:]]) == 2  # another case count in the same folder
    assert "another configuration" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "scan.nii.gz").write_bytes(b"user data")
    assert main(["phantom", str(foreign), "--cases", "1"]) == 2
    assert "refusing" in capsys.readouterr().err
    assert (foreign / "scan.nii.gz").read_bytes() == b"user data"


# --------------------------------------------------------------------------------------------
# Pictures
# --------------------------------------------------------------------------------------------


def test_overlay_colours():
    image = np.full((4, 4), 70.0)  # mid-grey in the (-100, 240) window
    truth = np.zeros((4, 4), bool)
    pred = np.zeros((4, 4), bool)
    truth[0, :2] = True
    pred[0, 1:3] = True
    rgb = overlay_rgb(image, truth, pred)
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    red, both, green, none = (rgb[0, k].astype(int) for k in range(4))
    assert none[0] == none[1] == none[2]
    assert red[0] > none[0] and red[1] < none[1] and red[2] < none[2]
    assert green[1] > none[1] and green[0] < none[0]
    assert both[0] > none[0] and both[1] > none[1] and both[2] < none[2]
    only_truth = overlay_rgb(image, truth)
    np.testing.assert_array_equal(only_truth[0, 1], red)  # no prediction: truth stays red
    with pytest.raises(ConfigError):
        overlay_rgb(image, truth[:3])


def test_preview_without_affine_or_label(tmp_path):
    image, label, affine = make_phantom_case(None, PhantomConfig(cases=1, **TINY), 0)
    empty = save_case_preview(image, np.zeros_like(label), None, tmp_path / "empty.png", title="no label")
    assert _png_size(empty) == PREVIEW_SIZE
    full = save_case_preview(image, label, affine, tmp_path / "sub" / "case.png")
    assert _png_size(full) == PREVIEW_SIZE
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["case.png", "empty.png"]  # no temp files
    with pytest.raises(ConfigError):
        save_case_preview(image[:, :, 0], None, None, tmp_path / "bad.png")
