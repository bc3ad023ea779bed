"""``atso-med train``: train the RSTN of one plane, the bundle's train workflow with friendlier flags."""

from __future__ import annotations

import argparse

from atso_med.cli.arguments import CLASSES_HELP, class_selection_spec, existing_file, integer


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train one plane's RSTN on the labeled (and validation) cases of a split",
        description="Train the RSTN of one plane with the bundle's train workflow (python -m monai.bundle run "
        "--config_file bundles/rstn_pancreas_ct/configs/train.json). The data list is built from DATASET and "
        "SPLITS: labeled cases train, validation cases select the model; test and reference labels are never used.",
    )
    parser.add_argument("dataset", help="dataset.json or its folder")
    parser.add_argument("--splits", type=existing_file, required=True, help="splits.json")
    parser.add_argument(
        "--out", required=True, help="output folder (checkpoints, model.pt, tensorboard, datalist.json)"
    )
    parser.add_argument(
        "--plane", default="Z", choices=["X", "Y", "Z", "x", "y", "z"], help="slicing plane (default Z, axial)"
    )
    parser.add_argument(
        "--recipe",
        default="scratch",
        choices=["scratch", "paper"],
        help="training recipe: scratch (default: U-Net halves, AdamW, Dice + BCE, augmentation; learns from random "
        "weights) or paper (FCN-8s, SGD as published; needs --init-weights)",
    )
    parser.add_argument(
        "--preset",
        default=None,
        help="network preset (default: the recipe's): unet, unet_small, unet_tiny (U-Net halves); full, small, tiny (FCN-8s)",
    )
    parser.add_argument(
        "--iterations", type=integer(1), default=None, help="training iterations (default: the recipe's)"
    )
    parser.add_argument(
        "--batch-size", type=integer(1), default=None, help="stacks per iteration (default: the recipe's)"
    )
    parser.add_argument(
        "--allow-random-init",
        action="store_true",
        help="train the paper recipe from random weights anyway (it does not learn)",
    )
    parser.add_argument("--workers", type=integer(0), default=4, help="data loader workers")
    parser.add_argument("--seed", type=integer(0), default=0, help="seed of data order and margins")
    parser.add_argument("--init-seed", type=integer(0), default=0, help="seed of the initial weights")
    parser.add_argument(
        "--init-weights", type=existing_file, default=None, help="local state-dict file (RSTN, FCN8s or VGG16 keys)"
    )
    parser.add_argument("--no-amp", action="store_true", help="disable CUDA mixed precision")
    parser.add_argument("--device", default=None, help="torch device (default: cuda:0 if available, else cpu)")
    parser.add_argument("--val-interval", type=integer(1), default=5000, help="iterations between validations")
    parser.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="resume an interrupted training from the newest checkpoint in --out (a finished one is left as it is)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a finished training in --out (refused without it)"
    )
    parser.add_argument(
        "--classes", nargs="+", metavar="NAME", help=CLASSES_HELP + " (default: the organ mask, non-zero)"
    )
    parser.add_argument(
        "--class-activation",
        choices=["sigmoid", "softmax"],
        default="sigmoid",
        help="with several --classes: one sigmoid per class (default), or a softmax over them (the classes of a "
        "pixel compete; what scoring labels at merged groups needs)",
    )
    parser.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any bundle key (value read as JSON when it parses, else as text), e.g. --set lr_fine=0.01",
    )
    return parser


def parse_settings(settings: list[str]) -> dict:
    """``["lr_fine=0.01", "plane=Z"]`` -> ``{"lr_fine": 0.01, "plane": "Z"}``.

    Raises:
        ConfigError: for an item without ``=``.
    """
    import json

    from atso_med.errors import ConfigError

    parsed = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def _check_outputs(out, inputs) -> None:
    """The run's data list and model never replace an input (a splits file called datalist.json,
    ``--init-weights`` pointing at ``--out/model.pt``); a rerun replaces its own."""
    from atso_med.files import check_output_file, json_with_keys

    list_kind = json_with_keys("training", "validation")
    check_output_file(
        out / "datalist.json",
        inputs,
        kind="training data list",
        force=True,
        is_kind=list_kind,
        option="--out",
        force_option=None,
    )
    check_output_file(out / "model.pt", inputs, kind="model", force=True, option="--out", force_option=None)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from atso_med.atso.generations import training_items
    from atso_med.data.class_selection import select_classes
    from atso_med.data.datalist import write_datalist
    from atso_med.data.dataset import Dataset, evaluation_datalist
    from atso_med.data.duplicates import check_copies_in_one_role
    from atso_med.data.splits import Splits
    from atso_med.devices import available_device
    from atso_med.engines.bundle_runner import check_bundle_keys, config_files, run_workflow
    from atso_med.engines.training_checks import check_finished_training, finished_training
    from atso_med.files import check_output_folder, check_outside_data_folder, dataset_inputs

    dataset = Dataset.load(args.dataset)
    classes = class_selection_spec(args.classes)
    if classes is not None:  # names checked before any file is read or written
        select_classes(classes, dataset.labels, f"{args.dataset}'s labels")
    splits = Splits.load(args.splits)
    splits.validate(dataset)
    out = Path(args.out)
    check_outside_data_folder(out, dataset.path, "--out")
    check_output_folder(out)
    inputs = dataset_inputs(dataset, args.splits) + (
        [("init weights", Path(args.init_weights))] if args.init_weights else []
    )
    _check_outputs(out, inputs)
    overrides = {
        "datalist": str(out / "datalist.json"),
        "output_dir": str(out),
        "plane": args.plane.upper(),
        "recipe": args.recipe,
        "preset": args.preset,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "allow_random_init": args.allow_random_init,
        "num_workers": args.workers,
        "seed": args.seed,
        "init_seed": args.init_seed,
        "init_weights": args.init_weights,
        "amp": not args.no_amp,
        "val_interval": args.val_interval,
        "save_interval": args.val_interval,
        "resume": args.resume,
        "overwrite": args.overwrite,
        "classes": classes,
        "class_activation": args.class_activation,
    }
    if args.device:
        overrides["device"] = f"$torch.device('{available_device(args.device)}')"
    overrides.update(parse_settings(args.settings))
    check_bundle_keys(config_files("train"), overrides)
    if args.resume and not args.overwrite and (finished := finished_training(out)) is not None:
        print(f"{out} holds a finished training ({finished.name}); nothing to continue (--overwrite replaces it)")
        return 0
    check_finished_training(out, args.resume, args.overwrite)
    check_copies_in_one_role(dataset, splits)
    write_datalist(
        out / "datalist.json",
        training_items(dataset, splits),
        evaluation_datalist(dataset, splits.validation),
        dataset.labels,
    )
    run_workflow(config_files("train"), overrides)
    print(f"model written to {out / 'model.pt'}")
    return 0
