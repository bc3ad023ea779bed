"""Splits: file format, validation messages, random and NIH 4-fold protocols, and ``atso-med split``."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from atso_med.cli.main import main
from atso_med.data.dataset import Dataset
from atso_med.data.split_protocols import NIH_TEST_FOLDS, case_number, make_splits, nih4fold_splits, parse_amount
from atso_med.data.splits import Splits
from atso_med.errors import SplitError


def make_dataset(root: Path, ids: list[str], unlabeled: set[str] = frozenset()) -> Path:
    cases = []
    for case_id in ids:
        case = {"id": case_id, "image": f"img/{case_id}.nii.gz"}
        if case_id not in unlabeled:
            case["label"] = f"lab/{case_id}.nii.gz"
        cases.append(case)
    path = root / "dataset.json"
    path.write_text(json.dumps({"name": "t", "labels": {"0": "bg", "1": "pancreas"}, "cases": cases}))
    return path


def nih_ids() -> list[str]:
    # TCIA's 80 remaining cases: 25 and 70 were removed as duplicates of case 2.
    return [f"PANCREAS_{n:04d}" for n in range(1, 83) if n not in (25, 70)]


@pytest.fixture
def only_our_commands(monkeypatch):
    """Register just verify and split, so these tests do not depend on other subcommands' modules."""
    # atso_med.cli.main is shadowed by the function of that name in atso_med.cli: fetch the module.
    monkeypatch.setattr(importlib.import_module("atso_med.cli.main"), "COMMANDS", ("verify", "split"))


@pytest.fixture
def dataset(tmp_path) -> Dataset:
    ids = [f"c{i:02d}" for i in range(20)]
    return Dataset.load(make_dataset(tmp_path, ids, unlabeled={f"c{i:02d}" for i in range(14, 20)}))


def test_parse_amount_string_forms():
    assert parse_amount("0.1") == 0.1 and isinstance(parse_amount("0.1"), float)
    assert parse_amount("6") == 6 and isinstance(parse_amount("6"), int)
    assert isinstance(parse_amount("1.0"), float) and isinstance(parse_amount("1"), int)
    for bad, message in (
        ("abc", "expected a count"),
        ("-1", "count must be >= 0"),
        ("1.5", "fraction must lie in"),
        (True, "expected"),
    ):
        with pytest.raises(SplitError, match=message):
            parse_amount(bad, "--labeled")


def test_random_split_is_deterministic_per_seed_and_differs_across_seeds(dataset):
    first = make_splits(dataset, labeled="3", folds=2, seed=7, test="4")
    assert make_splits(dataset, labeled="3", folds=2, seed=7, test="4") == first
    assert make_splits(dataset, labeled="3", folds=2, seed=8, test="4") != first
    # The draw does not depend on the order of cases in dataset.json.
    dataset.cases.reverse()
    assert make_splits(dataset, labeled="3", folds=2, seed=7, test="4") == first


def test_random_split_roles_sizes_and_folds(dataset):
    splits = make_splits(dataset, labeled=3, folds=3, seed=0, test=4, validation=2)
    labeled_ids = set(dataset.labeled_ids)
    assert len(splits.labeled) == 3 and len(splits.test) == 4 and len(splits.validation) == 2
    # Test, validation and labeled need truth; the 6 unlabeled cases can only be reference.
    assert set(splits.labeled + splits.test + splits.validation) <= labeled_ids
    assert set(dataset.ids) - labeled_ids <= set(splits.reference_ids)
    assert sorted(splits.labeled + splits.test + splits.validation + splits.reference_ids) == sorted(dataset.ids)
    sizes = [len(f) for f in splits.reference]
    assert sum(sizes) == 11 and max(sizes) - min(sizes) <= 1 and len(sizes) == 3
    assert splits.protocol == "random" and splits.seed == 0


def test_labeled_fraction_versus_count(dataset):
    # Fraction of the training pool: 20 cases - 4 test = 16; 0.25 * 16 = 4 cases. Count 1 = 1 case.
    assert len(make_splits(dataset, labeled="0.25", test="4").labeled) == 4
    assert len(make_splits(dataset, labeled=0.25, test=4).labeled) == 4
    assert len(make_splits(dataset, labeled="1", test="4").labeled) == 1
    # Test as a fraction of the 14 cases that have a label: 0.25 * 14 = 3.5 -> 4 (half up).
    assert len(make_splits(dataset, labeled=2, test="0.25").test) == 4
    with pytest.raises(SplitError, match="labeled: asked for 11 cases but only 10 are available"):
        make_splits(dataset, labeled=11, test=4)
    with pytest.raises(SplitError, match="is 0 cases"):
        make_splits(dataset, labeled="0.01", test=4)
    with pytest.raises(SplitError, match="folds must be an integer >= 2"):
        make_splits(dataset, labeled=2, folds=1)


def test_write_and_load_round_trip_with_documented_keys(tmp_path, dataset):
    splits = make_splits(dataset, labeled=3, seed=3, test=2)
    path = splits.write(tmp_path / "s" / "splits.json")
    text = path.read_text()
    assert list(json.loads(text))[:4] == ["labeled", "reference", "test", "validation"]
    assert "\n  " in text  # indented for hand editing
    assert Splits.load(path) == splits


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"labeled": [], "reference": [[], []]}, "missing key\\(s\\): 'test'"),
        ({"labeled": [], "reference": [[], []], "test": [], "validaton": []}, "unknown key\\(s\\): 'validaton'"),
        ({"labeled": "c00", "reference": [[], []], "test": []}, "'labeled' must be a list"),
        ({"labeled": [], "reference": [["a"], "b"], "test": []}, "'reference\\[1\\]' must be a list"),
    ],
)
def test_load_rejects_malformed_files(tmp_path, content, message):
    path = tmp_path / "splits.json"
    path.write_text(json.dumps(content))
    with pytest.raises(SplitError, match=message):
        Splits.load(path)


@pytest.mark.parametrize(
    ("splits", "message"),
    [
        (
            Splits(["c00", "zz1"], [["c01"], ["c02", "zz2"]], ["c03"]),
            "labeled ids not in dataset.json: 'zz1'.*reference ids not in dataset.json: 'zz2'",
        ),
        (
            Splits(["c00", "c01"], [["c01"], ["c02"]], []),
            "id 'c01' is in more than one place: labeled and reference\\[0\\]",
        ),
        (
            Splits(["c00"], [["c01", "c02"], ["c02"]], []),
            "id 'c02' is in more than one place: reference\\[0\\] and reference\\[1\\]",
        ),
        (Splits(["c00"], [["c01"], ["c02"]], ["c00"]), "id 'c00' is in more than one place: labeled and test"),
        (
            Splits(["c00", "c15"], [["c01"], ["c02"]], [], ["c16"]),
            "labeled ids without a label.*'c15'.*validation ids without a label.*'c16'",
        ),
        (Splits(["c00"], [["c01", "c02"]], []), "at least 2 folds, got 1"),
        (Splits(["c00"], [["c01"], [], ["c02"]], []), "empty reference fold\\(s\\): reference\\[1\\]"),
        (Splits([], [["c01"], ["c02"]], []), "no labeled case"),
    ],
)
def test_validate_names_ids_and_roles(dataset, splits, message):
    with pytest.raises(SplitError, match=message):
        splits.validate(dataset)


def test_case_numbers():
    assert case_number("PANCREAS_0001") == 1 and case_number("0082") == 82 and case_number("label0025") == 25
    with pytest.raises(SplitError, match="holds no case number"):
        case_number("pancreas")
    with pytest.raises(SplitError, match="several numbers"):
        case_number("v2_0001")


@pytest.mark.parametrize("test_fold", [0, 1, 2, 3])
def test_nih4fold_test_set_by_case_number(tmp_path, test_fold):
    dataset = Dataset.load(make_dataset(tmp_path, nih_ids()))
    splits = nih4fold_splits(dataset, test_fold=test_fold, labeled="0.1", folds=2, seed=0)
    low, high = NIH_TEST_FOLDS[test_fold]
    expected = [i for i in nih_ids() if low <= case_number(i) <= high]
    assert splits.test == expected
    assert len(expected) == {0: 20, 1: 19, 2: 21, 3: 20}[test_fold]  # 25 missing from fold 1, 70 from fold 3
    train = len(nih_ids()) - len(expected)
    assert len(splits.labeled) == round(0.1 * train) == 6
    assert sorted(splits.labeled + splits.reference_ids) == sorted(set(nih_ids()) - set(expected))
    sizes = [len(f) for f in splits.reference]
    assert max(sizes) - min(sizes) <= 1
    assert splits.protocol == "nih4fold" and splits.meta["test_fold"] == test_fold


def test_nih4fold_full_82_cases_gives_6_or_12_labeled_of_62(tmp_path):
    dataset = Dataset.load(make_dataset(tmp_path, [f"{n:04d}" for n in range(1, 83)]))
    ten = nih4fold_splits(dataset, test_fold=0, labeled=0.1, seed=1)
    twenty = nih4fold_splits(dataset, test_fold=0, labeled=0.2, seed=1)
    assert len(ten.test) == 20 and len(ten.labeled) == 6 and len(twenty.labeled) == 12
    assert ten == nih4fold_splits(dataset, test_fold=0, labeled=0.1, seed=1)
    assert ten.labeled != nih4fold_splits(dataset, test_fold=0, labeled=0.1, seed=2).labeled


def test_nih4fold_rejects_ids_without_numbers_and_bad_folds(tmp_path):
    dataset = Dataset.load(make_dataset(tmp_path, [*nih_ids()[:30], "extra_case", "PANCREAS_0099"]))
    with pytest.raises(SplitError, match=r"'extra_case' holds no case number.*outside 1..82.*'PANCREAS_0099'"):
        nih4fold_splits(dataset, test_fold=0, labeled=6)
    with pytest.raises(SplitError, match="test fold must be 0, 1, 2 or 3"):
        nih4fold_splits(Dataset.load(make_dataset(tmp_path, nih_ids())), test_fold=4, labeled=6)


def test_cli_writes_next_to_dataset_and_refuses_to_overwrite(tmp_path, capsys, only_our_commands):
    path = make_dataset(tmp_path, nih_ids())
    out = tmp_path / "splits.json"
    argv = [
        "split",
        str(path),
        "--labeled",
        "0.1",
        "--folds",
        "2",
        "--seed",
        "5",
        "--protocol",
        "nih4fold",
        "--test-fold",
        "1",
    ]
    assert main(argv) == 0
    summary = capsys.readouterr().out
    assert "labeled     6" in summary and "test        19" in summary and "2 folds of 28, 27" in summary
    splits = Splits.load(out)
    assert splits.seed == 5 and len(splits.test) == 19

    out.write_text(out.read_text().replace('"seed": 5', '"seed": 5 '))  # a hand edit
    edited = out.read_text()
    assert main([*argv[:-4], "--labeled", "2", "--test", "3"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert out.read_text() == edited  # untouched

    assert main(["split", str(path), "--labeled", "2", "--test", "3", "--seed", "5", "--force"]) == 0
    forced = Splits.load(out)
    assert forced.protocol == "random" and len(forced.labeled) == 2 and len(forced.test) == 3


def test_cli_out_option_and_argument_errors(tmp_path, capsys, only_our_commands):
    path = make_dataset(tmp_path, [f"c{i}" for i in range(10)])
    target = tmp_path / "runs" / "s.json"
    assert main(["split", str(path), "--labeled", "2", "--test", "0.2", "--out", str(target)]) == 0
    assert len(Splits.load(target).test) == 2 and not (tmp_path / "splits.json").exists()
    assert main(["split", str(path), "--labeled", "2", "--protocol", "nih4fold"]) == 2
    assert "needs --test-fold" in capsys.readouterr().err
    assert main(["split", str(path), "--labeled", "abc", "--out", str(tmp_path / "x.json")]) == 2
    assert "--labeled: expected a count" in capsys.readouterr().err
