"""``atso-med predict``: segment CTs with trained plane models (the bundle's inference workflow, friendlier flags)."""

from __future__ import annotations

import argparse
import sys

from atso_med.cli.arguments import integer, number, probability


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="segment CT images (NIfTI, DICOM folder, data list, dataset.json) with trained plane models",
        description="Coarse-to-fine RSTN inference of whole volumes with the bundle's inference workflow "
        "(python -m monai.bundle run --config_file bundles/rstn_pancreas_ct/configs/inference.json). Masks are "
        "written as OUT/<id>.nii.gz (uint8) on each input's own voxel grid with its affine (qform = sform, code 1), "
        "so they open aligned in 3D Slicer; models of several classes write label maps 0..C and name the "
        ".seg.nrrd segments after their classes. The HU window and long-axis spacing are the models' own. Cases "
        "whose mask exists are skipped unless --overwrite.",
    )
    models = parser.add_argument_group("models (at least one)")
    models.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="DIR",
        help="folder with plane_X/model.pt, plane_Y/model.pt, plane_Z/model.pt (any subset); repeat for an ensemble "
        "of model sets (majority vote, ties broken by mean probability >= 0.5)",
    )
    models.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="PLANE=PATH",
        help="one plane's model.pt, e.g. --model Z=runs/z/model.pt; repeat for other planes (one model set)",
    )
    parser.add_argument(
        "--input",
        required=True,
        help="a NIfTI file, a DICOM series folder, a folder of NIfTI files, a data-list JSON or a dataset.json",
    )
    parser.add_argument("--out", required=True, help="output folder (never an input folder)")
    parser.add_argument("--ids", nargs="+", default=None, help="only these case ids (dataset.json / data list)")
    parser.add_argument(
        "--key", default=None, help="list of a data-list JSON to read (default: testing, or the only one)"
    )
    parser.add_argument(
        "--rounds", type=integer(0), default=10, help="maximum fine rounds (default 10; 0 = coarse only)"
    )
    parser.add_argument(
        "--stop-dsc", type=probability, default=0.99, help="stop when the inter-round DSC reaches this (default 0.99)"
    )
    parser.add_argument(
        "--fusion", default="majority", choices=["majority", "mean"], help="plane fusion rule (default majority)"
    )
    parser.add_argument("--margin", type=integer(0), default=20, help="fine box margin in pixels (default 20)")
    parser.add_argument(
        "--batch-size",
        type=integer(1),
        default=None,
        help="3-slice stacks per network call (default 8 on CUDA, 1 on CPU, which keeps a 512x512x300 volume "
        "with full-size networks within 8 GB of host memory)",
    )
    parser.add_argument("--no-amp", action="store_true", help="disable CUDA mixed precision")
    parser.add_argument("--no-cleanup", action="store_true", help="keep small connected components")
    parser.add_argument("--probability", action="store_true", help="also write OUT/<id>_probability.nii.gz (float32)")
    parser.add_argument(
        "--seg-nrrd", action="store_true", help="also write OUT/<id>.seg.nrrd for 3D Slicer (segment 'pancreas')"
    )
    parser.add_argument(
        "--long-axis-spacing",
        type=number(positive=True),
        default=None,
        metavar="MM",
        help="resample the long (superior-inferior) axis to this slice spacing for inference (default: the "
        "spacing the models were trained at, read from their files; another one is refused); outputs are on the "
        "original grid",
    )
    parser.add_argument(
        "--round-dsc", action="store_true", help="record each round's DSC against the case's label (statistics only)"
    )
    parser.add_argument("--overwrite", action="store_true", help="predict again cases whose output exists")
    parser.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first case that cannot be read or predicted (default: predict the others, list the "
        "failures at the end and exit with status 1)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda:0 if available, else cpu)")
    return parser


def parse_models(args: argparse.Namespace) -> list:
    """The model sets of the command line: each ``--models`` folder, then the ``--model`` set.

    Raises:
        ConfigError: no model, or a ``--model`` without ``PLANE=PATH``.
    """
    from atso_med.errors import ConfigError

    sets: list = [str(folder) for folder in args.models]
    explicit: dict[str, str] = {}
    for item in args.model:
        plane, sep, path = item.partition("=")
        if not sep or not plane or not path:
            raise ConfigError(f"--model takes PLANE=PATH, got {item!r}")
        key = plane.strip().upper()
        if key in explicit:
            raise ConfigError(f"--model gives plane {key} twice")
        explicit[key] = path
    if explicit:
        sets.append(explicit)
    if not sets:
        raise ConfigError("no plane model given: use --models DIR or --model PLANE=PATH")
    return sets


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from atso_med.data.dataset import dataset_file
    from atso_med.devices import available_device
    from atso_med.engines.bundle_runner import config_files, run_workflow
    from atso_med.errors import CaseFailuresError
    from atso_med.files import check_outside_data_folder

    sets = parse_models(args)
    check_outside_data_folder(args.out, dataset_file(args.input), "--out")
    overrides = {
        "input": str(Path(args.input)),
        "datalist_key": args.key,
        "ids": args.ids,
        "model_dir": sets[0] if len(sets) == 1 else sets,
        "output_dir": str(Path(args.out)),
        "rounds": args.rounds,
        "stop_dsc": args.stop_dsc,
        "fusion": args.fusion,
        "margin": args.margin,
        **({"batch_size": args.batch_size} if args.batch_size else {}),
        "amp": not args.no_amp,
        "cleanup": not args.no_cleanup,
        "save_probability": args.probability,
        "save_seg_nrrd": args.seg_nrrd,
        "long_axis_spacing": args.long_axis_spacing,
        "round_dsc": args.round_dsc,
        "overwrite": args.overwrite,
        "fail_fast": args.fail_fast,
    }
    if args.device:
        overrides["device"] = str(available_device(args.device))
    try:
        results = run_workflow(config_files("inference"), overrides, workflow_type="infer").evaluator.results
    except CaseFailuresError as error:
        results = error.results
    predicted = [r for r in results if r["status"] == "predicted"]
    failed = [r for r in results if r["status"] == "failed"]
    skipped = len(results) - len(predicted) - len(failed)
    for r in predicted:
        by_class = "".join(f", {name} {n}" for name, n in r.get("classes", {}).items())
        print(f"{r['id']}: {r['voxels']} voxels ({r['volume_ml']:.1f} ml{by_class}) -> {r['output']}")
    print(f"{len(predicted)} case(s) predicted, {skipped} skipped (output exists), {len(failed)} failed in {args.out}")
    for r in failed:
        print(f"atso-med predict: error: case {r['id']!r} failed: {r['error']}", file=sys.stderr)
    return 1 if failed else 0
