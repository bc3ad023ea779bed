"""``atso-med evaluate``: DSC of a prediction folder against a dataset's labels (summary.json + per_case.csv)."""

from __future__ import annotations

import argparse

from atso_med.cli.arguments import CLASSES_HELP, class_selection_spec, existing_file, integer, number


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted masks against labels: per-case, mean +- std and global DSC",
        description="Compare PREDICTIONS/<id>.nii.gz with the labels of a dataset.json or a data list, voxel for voxel "
        "on the prediction's grid (a label on another grid is an error, never resampled). Writes summary.json and "
        "per_case.csv (also available as: python -m monai.bundle run --config_file "
        "bundles/rstn_pancreas_ct/configs/evaluate.json).",
    )
    parser.add_argument("--predictions", required=True, help="folder of <id>.nii.gz predictions")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", help="dataset.json (or its folder) with the labels")
    source.add_argument("--datalist", type=existing_file, help="MONAI data-list JSON with labels")
    parser.add_argument("--key", default=None, help="list of the data list to read (default: testing, or the only one)")
    parser.add_argument("--ids", nargs="+", default=None, help="only these case ids (default: every labeled case)")
    parser.add_argument(
        "--foreground",
        nargs="+",
        type=integer(1),
        default=None,
        help="label values counted as organ (default: every non-zero value, e.g. MSD pancreas 1 and tumour 2)",
    )
    parser.add_argument(
        "--classes",
        nargs="+",
        metavar="NAME",
        default=None,
        help=CLASSES_HELP + "; several classes are scored one by one (predictions then hold the classes 1..C)",
    )
    parser.add_argument(
        "--threshold",
        type=number(),
        default=None,
        help="binarize probability-map predictions: organ where the value exceeds this (default: predictions must be "
        "integer label maps; a probability map is refused)",
    )
    parser.add_argument(
        "--stats",
        type=existing_file,
        default=None,
        help="prediction_stats.json for per-round DSC (default: the one in --predictions)",
    )
    parser.add_argument(
        "--out", default=None, help="output folder for summary.json and per_case.csv (default: --predictions)"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    from atso_med.metrics.evaluation import run_evaluation

    report = run_evaluation(
        predictions_dir=args.predictions,
        datalist=args.dataset or args.datalist,
        output_dir=args.out,
        ids=args.ids,
        foreground=args.foreground,
        stats=args.stats,
        datalist_key=args.key,
        threshold=args.threshold,
        selection=class_selection_spec(args.classes),
    )
    for row in report.per_case:
        by_class = "".join(
            f", {name} {'-' if s['dsc'] is None else format(s['dsc'], '.4f')}"
            for name, s in row.get("classes", {}).items()
        )
        print(f"{row['id']}: DSC {row['dsc']:.4f}{by_class}")
    s = report.summary
    print(
        f"{s['cases']} cases: mean DSC {s['mean_dsc']:.4f} +- {s['std_dsc']:.4f} (min {s['min_dsc']:.4f}, "
        f"max {s['max_dsc']:.4f}), global DSC {s['global_dsc']:.4f}"
    )
    organ = s.get("organ_classes") or {}
    if len(organ) > 1:
        together = " + ".join(f"{value} {name}" for value, name in organ.items())
        print(f"scored as one organ: {together} (--classes NAME... scores classes one by one)")
    for name, entry in s.get("classes", {}).get("per_class", {}).items():
        mean = "-" if entry["mean_dsc"] is None else f"{entry['mean_dsc']:.4f}"
        print(f"  {name}: mean DSC {mean} over {entry['cases']} cases, vanished in {entry['vanished']}")
    print(f"written: {report.files['summary']}, {report.files['per_case']}")
    return 0
