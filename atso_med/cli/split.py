"""``atso-med split``: choose labeled, reference, test and validation cases and write splits.json."""

from __future__ import annotations

import argparse

from atso_med.cli.arguments import integer


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``split`` subcommand.

    Args:
        subparsers: the top-level parser's subparsers.

    Returns:
        The ``split`` parser.
    """
    parser = subparsers.add_parser(
        "split",
        help="write splits.json: labeled / reference folds / test / validation",
        description=(
            "Draw a reproducible split of DATASET and write splits.json (default: next to "
            "dataset.json). Amounts are a count ('6') or a fraction ('0.1'). Protocol 'random' "
            "draws test and validation from the cases with a label, then the labeled cases; "
            "protocol 'nih4fold' takes NIH Pancreas-CT test cases 1-20 / 21-40 / 41-61 / 62-82 "
            "by --test-fold. Every other case becomes reference, dealt into --folds folds."
        ),
    )
    parser.add_argument("dataset", metavar="DATASET", help="dataset.json, or the folder holding it")
    parser.add_argument(
        "--labeled",
        required=True,
        metavar="N|FRACTION",
        help="labeled cases: a count ('6') or a fraction of the training pool ('0.1')",
    )
    parser.add_argument("--folds", type=integer(1), default=2, help="number of reference folds K (default 2)")
    parser.add_argument("--seed", type=integer(0), default=0, help="random seed (default 0)")
    parser.add_argument(
        "--test",
        default=None,
        metavar="N|FRACTION",
        help="random protocol: test cases, a count or a fraction of the cases with a label (default 0.25)",
    )
    parser.add_argument(
        "--validation",
        default="0",
        metavar="N|FRACTION",
        help="validation cases (with labels) for model selection (default 0)",
    )
    parser.add_argument("--protocol", choices=("random", "nih4fold"), default="random", help="default random")
    parser.add_argument("--test-fold", type=integer(0, 3), metavar="F", help="nih4fold: test fold 0..3")
    parser.add_argument("--out", metavar="splits.json", help="output file (default: splits.json next to dataset.json)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing splits file")
    return parser


def run(args: argparse.Namespace) -> int:
    """Make the splits, write them and print a summary.

    Args:
        args: parsed arguments.

    Returns:
        0 on success.

    Raises:
        DatasetError: dataset.json is malformed.
        SplitError: bad amounts, a missing or bad --test-fold, ids without NIH case numbers,
            or an existing output file without --force.
    """
    from pathlib import Path

    from atso_med.data.dataset import Dataset
    from atso_med.data.duplicates import find_copies
    from atso_med.data.split_protocols import make_splits, nih4fold_splits, parse_amount
    from atso_med.data.splits import SPLITS_FILE
    from atso_med.errors import SplitError
    from atso_med.files import check_output_file, dataset_inputs, json_with_keys

    dataset = Dataset.load(args.dataset)
    out = Path(args.out) if args.out else Path(dataset.path).parent / SPLITS_FILE
    # Check before the (cheap) draw so a hand-edited file is never lost to a typo'd command.
    check_output_file(
        out,
        dataset_inputs(dataset),
        kind="splits file",
        force=args.force,
        is_kind=json_with_keys("labeled", "reference"),
        option="--out",
    )

    labeled = parse_amount(args.labeled, "--labeled")
    validation = parse_amount(args.validation, "--validation")
    copies = find_copies(dataset)
    if args.protocol == "nih4fold":
        if args.test_fold is None:
            raise SplitError("--protocol nih4fold needs --test-fold 0..3")
        if args.test is not None:
            raise SplitError("--test does not apply to --protocol nih4fold: the test set is fixed by --test-fold")
        splits = nih4fold_splits(
            dataset,
            args.test_fold,
            labeled=labeled,
            folds=args.folds,
            seed=args.seed,
            validation=validation,
            copies=copies,
        )
    else:
        if args.test_fold is not None:
            raise SplitError("--test-fold applies to --protocol nih4fold only")
        test = parse_amount(args.test if args.test is not None else "0.25", "--test")
        splits = make_splits(
            dataset, labeled=labeled, folds=args.folds, seed=args.seed, test=test, validation=validation, copies=copies
        )

    splits.write(out)
    unlabeled = sum(dataset.case(i).label is None for i in splits.reference_ids)
    print(f"wrote {out} ({splits.protocol}, seed {splits.seed})")
    print(f"  labeled     {len(splits.labeled)}")
    print(
        f"  reference   {len(splits.reference_ids)} in {splits.folds} folds of "
        f"{', '.join(str(len(f)) for f in splits.reference)} ({unlabeled} without a label in dataset.json)"
    )
    print(f"  test        {len(splits.test)}")
    print(f"  validation  {len(splits.validation)}")
    for group in copies:
        print(f"  copies of one image, kept in one role: {', '.join(group)}")
    unused = len(dataset.cases) - len(splits.roles())
    if unused:
        print(f"  unused      {unused}")
    return 0
