"""``atso-med phantom``: write the synthetic abdominal CT data set."""

from __future__ import annotations

import argparse

from atso_med.cli.arguments import integer, number


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``phantom`` on the top-level subparsers.

    Args:
        subparsers: the object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The subcommand's parser.
    """
    parser = subparsers.add_parser(
        "phantom",
        help="write the synthetic abdominal CT data set (NIfTI + dataset.json)",
        description=(
            "Write a synthetic contrast-enhanced abdominal CT data set with pancreas labels (or, "
            "with --labels organs, one class per organ), a "
            "stand-in for NIH Pancreas-CT: OUT/imagesTr/case_000.nii.gz (int16 HU), "
            "OUT/labelsTr/case_000.nii.gz (uint8) and OUT/dataset.json. Case k depends only on "
            "(seed, domain, k). OUT must be new, empty, or a phantom of the same configuration "
            "(then nothing is done, or an interrupted run is finished)."
        ),
    )
    parser.add_argument("out", metavar="OUT", help="output folder")
    parser.add_argument("--cases", type=integer(1), default=20, help="number of cases (default: %(default)s)")
    parser.add_argument("--seed", type=integer(0), default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--shape",
        type=integer(1),
        nargs=3,
        metavar=("H", "W", "D"),
        default=None,
        help="nominal array shape; the slice count varies +-25%% per case (default: 128 128 80)",
    )
    parser.add_argument(
        "--spacing",
        type=number(positive=True),
        nargs=3,
        metavar=("SX", "SY", "SZ"),
        default=None,
        help="nominal voxel size in mm of the source scanner (default: 1.5 1.5 2.5)",
    )
    parser.add_argument(
        "--domain",
        choices=("source", "shifted"),
        default="source",
        help="source: portal-venous scanner; shifted: another scanner (arterial phase, noisier, "
        "HU offset, other resolution, pancreatic lesions) (default: %(default)s)",
    )
    # The classes are spelled out here rather than read from ORGAN_CLASSES, so that building the
    # parser does not import the data package; tests/test_phantom_organs.py keeps the two equal.
    parser.add_argument(
        "--labels",
        choices=("pancreas", "organs"),
        default="pancreas",
        help="label map written: pancreas: 0 background, 1 pancreas (incl. lesions); organs: one "
        "class per organ: 1 pancreas (incl. lesions), 2 liver, 3 spleen, 4 kidney_left, "
        "5 kidney_right, 6 gallbladder, 7 gi_tract (stomach, duodenum, small bowel, colon, with "
        "their contents), 8 arteries, 9 veins, 10 ivc; every class is named in dataset.json's "
        "labels. The images are the same either way (default: %(default)s)",
    )
    parser.add_argument(
        "--preview",
        metavar="PNG",
        default=None,
        help="also save a PNG of case_000 with its pancreas (class 1) overlaid",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Write the data set (and the preview) and report where and how long.

    Args:
        args: parsed arguments of :func:`add_parser`.

    Returns:
        0 on success.

    Raises:
        ConfigError: a bad value, or OUT holds other data.
    """
    import sys
    import time
    from pathlib import Path

    from atso_med.data.phantom import PhantomConfig, phantom_status, write_phantom_dataset

    kwargs = {"cases": args.cases, "seed": args.seed, "domain": args.domain, "labels": args.labels}
    if args.shape is not None:
        kwargs["shape"] = tuple(args.shape)
    if args.spacing is not None:
        kwargs["spacing"] = tuple(args.spacing)
    config = PhantomConfig(**kwargs)
    out = Path(args.out)
    start = time.perf_counter()
    status = phantom_status(out, config)
    what = f"{config.cases} {config.domain} cases, seed {config.seed}"
    if config.labels != "pancreas":
        what += f", {config.labels} labels"
    if status == "complete":
        print(f"{out}: already holds this phantom ({what}); nothing to do")
    else:
        if status == "partial":
            print(f"{out}: finishing an interrupted run of the same configuration")

        def progress(done: int, total: int) -> None:
            print(f"\rcase {done}/{total}", end="" if done < total else "\n", file=sys.stderr, flush=True)

        dataset = write_phantom_dataset(out, config, progress=progress if sys.stderr.isatty() else None)
        elapsed = time.perf_counter() - start
        print(f"wrote {what} to {out} in {elapsed:.1f} s: {dataset}")
    if args.preview:
        preview = _write_preview(out, Path(args.preview))
        print(f"preview: {preview}")
    return 0


def _write_preview(out, png):
    """Render the first case from its files, as any reader of the data set would see it.

    Pancreas is class 1 in both label maps; only it is overlaid (and centres the planes), so that
    an organ map's preview looks at the pancreas as the single-organ one does.
    """
    import nibabel as nib
    import numpy as np

    from atso_med.visualize import save_case_preview

    image = nib.load(str(out / "imagesTr" / "case_000.nii.gz"))
    label = nib.load(str(out / "labelsTr" / "case_000.nii.gz"))
    return save_case_preview(
        np.asarray(image.dataobj),
        np.asarray(label.dataobj) == 1,
        image.affine,
        png,
        title=f"{out.name}/case_000 (pancreas in red)",
    )
