"""``atso-med verify``: read every case of a dataset and report all problems before any work starts."""

from __future__ import annotations

import argparse

from atso_med.cli.arguments import CLASSES_HELP, class_selection_spec, existing_file


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``verify`` subcommand.

    Args:
        subparsers: the top-level parser's subparsers.

    Returns:
        The ``verify`` parser.
    """
    parser = subparsers.add_parser(
        "verify",
        help="check every image and label of a dataset (and its splits)",
        description=(
            "Read every case of DATASET and check it: image readable, 3D, finite; label on the "
            "image grid, integer, declared classes; splits consistent. Prints one row per case, "
            "then one line per error. Exit status 0 when every case is ok, 1 when any is bad, "
            "2 when dataset.json or splits.json itself is malformed."
        ),
    )
    parser.add_argument("dataset", metavar="DATASET", help="dataset.json, or the folder holding it")
    parser.add_argument(
        "--splits", type=existing_file, metavar="SPLITS", help="splits.json to check against the dataset"
    )
    parser.add_argument("--classes", nargs="+", metavar="NAME", help=CLASSES_HELP)
    parser.add_argument("--json", dest="json_out", metavar="OUT.json", help="also write the report as JSON")
    parser.add_argument("--force", action="store_true", help="overwrite an existing report given by --json")
    return parser


def run(args: argparse.Namespace) -> int:
    """Verify the dataset and print the report.

    Args:
        args: parsed arguments (``dataset``, ``splits``, ``json_out``).

    Returns:
        0 when everything is ok, 1 when any case or the splits have an error.

    Raises:
        DatasetError: dataset.json is malformed (duplicate ids, missing keys, not JSON).
        SplitError: splits.json is malformed.
    """
    import json
    import sys

    from atso_med.data.dataset import Dataset
    from atso_med.data.splits import Splits
    from atso_med.data.verify import verify_dataset
    from atso_med.files import check_output_file, dataset_inputs, json_with_keys, write_text_atomic

    dataset = Dataset.load(args.dataset)
    if args.json_out:  # before reading any image: a report must never replace what it reports on
        check_output_file(
            args.json_out,
            dataset_inputs(dataset, args.splits),
            kind="verify report",
            force=args.force,
            is_kind=json_with_keys("dataset", "n_cases", "cases"),
            option="--json",
        )
    splits = Splits.load(args.splits) if args.splits else None

    def progress(index: int, total: int, case_id: str) -> None:
        # Only on a terminal: large datasets take minutes, but logs and pipes stay clean.
        if sys.stderr.isatty():
            print(f"\r[{index}/{total}] {case_id}\033[K", end="", file=sys.stderr, flush=True)

    report = verify_dataset(dataset, splits, progress=progress, classes=class_selection_spec(args.classes))
    if sys.stderr.isatty():
        print("\r\033[K", end="", file=sys.stderr, flush=True)

    print(report.format_table())
    n_bad = sum(not row.ok for row in report.rows)
    print()
    print(f"{dataset.name}: {len(report.rows)} cases, {len(report.rows) - n_bad} ok, {n_bad} bad")
    if report.selection is not None:
        n_labels = sum(row.has_label and bool(row.label_counts) for row in report.rows)
        print(f"classes: {report.selection.describe()}")
        for name, n in report.class_presence().items():
            print(f"  {name}: in {n} of {n_labels} labels")
    for message in report.warnings:
        print(f"WARNING {message}")
    for message in report.errors:
        print(f"ERROR {message}")
    if args.json_out:
        write_text_atomic(json.dumps(report.to_dict(), indent=2) + "\n", args.json_out)
    return 0 if report.ok else 1
