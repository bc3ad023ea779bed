"""Tests of the phantom's multi-organ label map (``PhantomConfig(labels="organs")``,
``atso-med phantom --labels organs``) and of the single-organ default it must leave unchanged."""

from __future__ import annotations

import argparse
import json

import nibabel as nib
import numpy as np
import pytest

from atso_med.cli import phantom as phantom_cli
from atso_med.cli.main import main
from atso_med.data.phantom import (
    LABEL_MAPS,
    ORGAN_CLASSES,
    TISSUES,
    PhantomConfig,
    label_names,
    phantom_status,
    render_phantom_case,
    write_phantom_dataset,
)
from atso_med.errors import ConfigError

SMALL = {"shape": (48, 48, 16), "seed": 5}


@pytest.fixture(scope="module")
def organ_cases():
    """Four cases rendered with the organ map, with their tissue maps."""
    config = PhantomConfig(cases=4, labels="organs", **SMALL)
    return [render_phantom_case(None, config, k) for k in range(config.cases)]


def names_index(name: str) -> int:
    """Position of a class in :data:`ORGAN_CLASSES` (its value minus one)."""
    return [c.name for c in ORGAN_CLASSES].index(name)


def _tissue_mask(tissue: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    return np.isin(tissue, [TISSUES[n] for n in names])


def test_class_table_is_disjoint_and_named_in_dataset_labels():
    names = [c.name for c in ORGAN_CLASSES]
    assert names[0] == "pancreas"  # class 1, as in the single-organ map
    assert len(set(names)) == len(names)
    # Every tissue belongs to at most one class, except that a paired organ's sides share theirs.
    owners: dict[tuple[str, str | None], str] = {}
    for organ in ORGAN_CLASSES:
        for tissue in organ.tissues:
            assert tissue in TISSUES
            for (other, side), owner in owners.items():
                if other == tissue:
                    assert side is not None and organ.side is not None and side != organ.side, (tissue, owner)
            owners[(tissue, organ.side)] = organ.name
    assert label_names("organs") == {"0": "background", **{str(k): n for k, n in enumerate(names, start=1)}}
    assert label_names("pancreas") == {"0": "background", "1": "pancreas"}
    assert LABEL_MAPS == ("pancreas", "organs")


def test_organ_map_holds_every_class_and_equals_the_tissue_masks(organ_cases):
    seen = dict.fromkeys(range(1, len(ORGAN_CLASSES) + 1), 0)
    for case in organ_cases:
        label, tissue = case.label, case.tissue
        assert label.dtype == np.uint8 and label.shape == tissue.shape == case.image.shape
        assert set(np.unique(label).tolist()) <= set(range(len(ORGAN_CLASSES) + 1))
        union = np.zeros(label.shape, dtype=bool)
        for value, organ in enumerate(ORGAN_CLASSES, start=1):
            mask = label == value
            seen[value] += bool(mask.any())
            if organ.side is None:
                # The class is exactly its tissues: nothing of them left out, nothing else in.
                np.testing.assert_array_equal(mask, _tissue_mask(tissue, organ.tissues))
            union |= _tissue_mask(tissue, organ.tissues)
        # The classes (one value per voxel, so disjoint) cover exactly the organs' tissues.
        np.testing.assert_array_equal(label > 0, union)
        # Left and right kidney: both sides together are the kidney tissue, and the left one lies
        # towards the patient's left (array axis 0 points left: LPS-ordered storage).
        assert nib.aff2axcodes(case.affine)[0] == "L"
        left, right = (np.nonzero(label == 1 + names_index(n))[0] for n in ("kidney_left", "kidney_right"))
        if left.size and right.size:
            assert left.min() > right.max()
    assert all(count >= 1 for count in seen.values()), seen
    # The small organs appear in most cases (the gallbladder is missing in about 1 case of 5).
    n = len(organ_cases)
    assert seen[1] == n
    assert seen[1 + names_index("kidney_left")] >= n - 1 and seen[1 + names_index("kidney_right")] >= n - 1
    assert seen[1 + names_index("gallbladder")] >= n // 2


def test_label_choice_changes_neither_the_images_nor_the_pancreas(tmp_path):
    pancreas = PhantomConfig(cases=2, **SMALL)
    organs = PhantomConfig(cases=2, labels="organs", **SMALL)
    for domain in ("source", "shifted"):
        for k in range(2):
            one = render_phantom_case(None, PhantomConfig(cases=2, domain=domain, **SMALL), k)
            many = render_phantom_case(None, PhantomConfig(cases=2, domain=domain, labels="organs", **SMALL), k)
            assert one.image.dtype == many.image.dtype and one.image.tobytes() == many.image.tobytes()
            np.testing.assert_array_equal(one.affine, many.affine)
            np.testing.assert_array_equal(one.tissue, many.tissue)
            np.testing.assert_array_equal(one.label, (many.label == 1).astype(np.uint8))
            assert one.meta == many.meta
    # On disk: byte-equal image files; dataset.json differs only in what names the label map.
    a = json.loads(write_phantom_dataset(tmp_path / "one", pancreas).read_text())
    b = json.loads(write_phantom_dataset(tmp_path / "many", organs).read_text())
    for entry in a["cases"]:
        assert (tmp_path / "one" / entry["image"]).read_bytes() == (tmp_path / "many" / entry["image"]).read_bytes()
        one = np.asarray(nib.load(str(tmp_path / "one" / entry["label"])).dataobj)
        many = np.asarray(nib.load(str(tmp_path / "many" / entry["label"])).dataobj)
        np.testing.assert_array_equal(one, (many == 1).astype(np.uint8))
    assert a["labels"] == {"0": "background", "1": "pancreas"}
    assert b["labels"] == label_names("organs")
    # The default's resolved configuration is the one written before the option existed.
    assert "labels" not in a["phantom"] and b["phantom"]["labels"] == "organs"
    assert {k: v for k, v in b["phantom"].items() if k != "labels"} == a["phantom"]
    assert a["cases"] == b["cases"] and a["name"] == b["name"]


def test_another_label_choice_is_refused_on_resume(tmp_path):
    write_phantom_dataset(tmp_path / "one", PhantomConfig(cases=1, **SMALL))
    write_phantom_dataset(tmp_path / "many", PhantomConfig(cases=1, labels="organs", **SMALL))
    assert phantom_status(tmp_path / "many", PhantomConfig(cases=1, labels="organs", **SMALL)) == "complete"
    with pytest.raises(ConfigError, match="labels: 'pancreas' there, 'organs' asked"):
        phantom_status(tmp_path / "one", PhantomConfig(cases=1, labels="organs", **SMALL))
    with pytest.raises(ConfigError, match="labels"):
        write_phantom_dataset(tmp_path / "many", PhantomConfig(cases=1, **SMALL))
    with pytest.raises(ConfigError, match="labels"):
        PhantomConfig(labels="kidneys")


def test_cli_writes_an_organ_map_that_verify_accepts(tmp_path, capsys):
    out = tmp_path / "organs"
    assert (
        main(["phantom", str(out), "--cases", "2", "--seed", "5", "--shape", "48", "48", "16", "--labels", "organs"])
        == 0
    )
    assert "organs labels" in capsys.readouterr().out
    dataset = json.loads((out / "dataset.json").read_text())
    assert dataset["labels"] == label_names("organs") and dataset["phantom"]["labels"] == "organs"
    values = set()
    for entry in dataset["cases"]:
        values |= set(np.unique(np.asarray(nib.load(str(out / entry["label"])).dataobj)).tolist())
    assert values <= {int(k) for k in dataset["labels"]} and max(values) > 1
    assert main(["verify", str(out)]) == 0
    # The same command again: nothing to do; with the default label map: refused.
    assert (
        main(["phantom", str(out), "--cases", "2", "--seed", "5", "--shape", "48", "48", "16", "--labels", "organs"])
        == 0
    )
    assert "nothing to do" in capsys.readouterr().out
    assert main(["phantom", str(out), "--cases", "2", "--seed", "5", "--shape", "48", "48", "16"]) != 0


def test_cli_help_names_every_class_in_order():
    # The parser spells the classes out (it does not import the data package): keep them equal.
    parser = phantom_cli.add_parser(argparse.ArgumentParser().add_subparsers())
    (action,) = [a for a in parser._actions if "--labels" in a.option_strings]
    assert tuple(action.choices) == LABEL_MAPS and action.default == "pancreas"
    text = " ".join(action.help.split())
    positions = [text.index(f"{k} {c.name}") for k, c in enumerate(ORGAN_CLASSES, start=1)]
    assert positions == sorted(positions)
