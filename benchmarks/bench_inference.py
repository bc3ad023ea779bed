"""Benchmark of whole-volume coarse-to-fine RSTN inference (:class:`CoarseToFineInferer`).

Builds random-weight plane networks (``initialize_rstn(seed=0)``), a synthetic volume in [0, 1]
with a brighter central "organ", and times round 0 (the coarse pass of every plane) and the fine
rounds separately. Prints seconds per volume per stage, the peak host memory (``ru_maxrss``) and,
on CUDA, the peak GPU memory.

With random weights the coarse mask is often empty or nearly full, which would skip the fine
rounds or give them whole-image boxes. ``--force-mask`` replaces the mask of every round by a
central ellipsoid about the size of a pancreas (semi-axes 15 %, 10 %, 15 % of the volume), so
the fine rounds run on realistic boxes; the score map still comes from the previous round.

``--estimate-shape I J K`` also times one stack per plane at that volume's plane shapes (coarse
on the whole stack, fine on the central stack of the forced ellipsoid) and extrapolates a
volume's coarse and per-round fine time from the stack counts, without running the volume.

Example (CPU, reduced size)::

    python benchmarks/bench_inference.py --shape 128 128 32 --preset full --rounds 2 \\
        --force-mask --threads 2 --estimate-shape 512 512 220
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Sequence
from functools import partial

import numpy as np
import torch

from atso_med.data.slices import PLANES, plane_axis, slice_stack
from atso_med.inferers import CoarseToFineInferer, InferenceConfig, estimate_peak_host_bytes
from atso_med.networks import RSTN_PRESETS, box_from_mask, build_rstn, initialize_rstn

#: Semi-axes of the forced organ, as fractions of the volume's sizes.
ORGAN_FRACTIONS = (0.15, 0.10, 0.15)


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def ellipsoid(shape: Sequence[int], fractions: Sequence[float] = ORGAN_FRACTIONS) -> np.ndarray:
    """Central ellipsoid mask (uint8) with semi-axes ``fractions`` x shape, at least 1 voxel."""
    # Built axis by axis with broadcasting: no full-size float grids.
    total = np.zeros((1, 1, 1), np.float32)
    for axis, (size, frac) in enumerate(zip(shape, fractions, strict=True)):
        coords = (np.arange(size, dtype=np.float32) - (size - 1) / 2) / max(frac * size, 0.5)
        total = total + (coords**2).reshape([-1 if a == axis else 1 for a in range(3)])
    return (total <= 1).astype(np.uint8)


def synthetic_volume(shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Float32 volume in [0, 1]: noisy background 0.3, a brighter ellipsoid 0.6."""
    rng = np.random.default_rng(seed)
    volume = rng.random(tuple(shape), dtype=np.float32)
    volume *= 0.2
    volume += 0.2
    volume += 0.3 * ellipsoid(shape)
    return volume


def active_stacks(mask: np.ndarray, plane: str) -> int:
    """Number of stacks of a plane whose 3 slices hold a mask voxel (the fine rounds' work)."""
    axis = plane_axis(plane)
    hit = mask.any(axis=tuple(a for a in range(3) if a != axis))
    near = hit.copy()
    near[1:] |= hit[:-1]
    near[:-1] |= hit[1:]
    return int(near.sum())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn, device: torch.device, repeats: int) -> float:
    """Mean seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def estimate(models: dict, shape: Sequence[int], cfg: InferenceConfig, device: torch.device, repeats: int) -> None:
    """Times one stack per plane at ``shape``'s plane sizes and extrapolates a volume's time."""
    mask = ellipsoid(shape)
    size = "x".join(map(str, shape))
    print(f"\nper-stack timings for a {size} volume (batch 1, {repeats} repeat(s) after a warm-up):")
    coarse_total = fine_total = 0.0
    autocast = torch.autocast("cuda") if (cfg.amp and device.type == "cuda") else torch.autocast("cpu", enabled=False)
    for plane, model in models.items():
        axis = plane_axis(plane)
        centre = shape[axis] // 2
        # One stack, never the whole volume; the mask stack is the ellipsoid's central one.
        image = torch.rand((1, 3, *[s for a, s in enumerate(shape) if a != axis]), device=device)
        m_stack = torch.from_numpy(np.ascontiguousarray(slice_stack(mask, plane, centre)))[None].to(device)
        with torch.inference_mode(), autocast:
            t_coarse = time_call(partial(model.coarse_probability, image), device, repeats)
            t_fine = time_call(
                partial(model.fine_probability, image, image, m_stack, margin=cfg.margin), device, repeats
            )
        # The central stack has the largest box: the fine estimate is an upper one.
        top, bottom, left, right = box_from_mask(m_stack, cfg.margin)[0].tolist()
        box = (bottom - top, right - left)
        n_coarse, n_fine = shape[axis], active_stacks(mask, plane)
        coarse_total += n_coarse * t_coarse
        fine_total += n_fine * t_fine
        print(
            f"  plane {plane}: stack {tuple(image.shape[2:])}: coarse {t_coarse:.3f} s x {n_coarse} stacks "
            f"= {n_coarse * t_coarse:.1f} s; fine (box {box[0]}x{box[1]}) {t_fine:.3f} s x {n_fine} stacks "
            f"= {n_fine * t_fine:.1f} s per round"
        )
    print(
        f"estimated per volume: coarse {coarse_total:.0f} s, fine {fine_total:.0f} s per round; "
        f"total {coarse_total + cfg.rounds * fine_total:.0f} s with {cfg.rounds} fine rounds "
        f"({coarse_total + 3 * fine_total:.0f} s if it stops after 3)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 220], metavar=("I", "J", "K"))
    parser.add_argument("--preset", default="full", choices=sorted(RSTN_PRESETS))
    parser.add_argument("--rounds", type=int, default=10, help="fine rounds (R)")
    parser.add_argument("--planes", nargs="+", default=list(PLANES), choices=list(PLANES))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--fusion", default="majority", choices=["majority", "mean"])
    parser.add_argument("--no-amp", action="store_true", help="float32 on CUDA too")
    parser.add_argument("--force-mask", action="store_true", help="fine rounds on a central ellipsoid's boxes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimate-shape", type=int, nargs=3, default=None, metavar=("I", "J", "K"))
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats per stack for --estimate-shape")
    parser.add_argument("--skip-run", action="store_true", help="only the per-stack estimate")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    shape = tuple(args.shape)
    cfg = InferenceConfig(
        rounds=args.rounds,
        batch_size=args.batch_size,
        fusion=args.fusion,
        amp=not args.no_amp,
        stop_dsc=1.0,  # time every round the benchmark asks for unless the mask stops changing
    )
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"device {device} ({where}), preset {args.preset}, planes {''.join(args.planes)}, shape {shape}, "
        f"rounds {cfg.rounds}, batch {cfg.batch_size}, fusion {cfg.fusion}, "
        f"amp {cfg.amp and device.type == 'cuda'}, torch {torch.__version__}"
    )
    start = time.perf_counter()
    models = {p: initialize_rstn(build_rstn(args.preset), seed=args.seed).to(device).eval() for p in args.planes}
    print(f"built {len(models)} network(s) in {time.perf_counter() - start:.1f} s; peak RSS {peak_rss_gb():.2f} GB")

    if not args.skip_run:
        volume = synthetic_volume(shape, args.seed)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        inferer = CoarseToFineInferer(models, cfg, device=device)
        estimate_gb = estimate_peak_host_bytes(shape) / 1e9
        if args.force_mask:
            forced = ellipsoid(shape)
            start = time.perf_counter()
            _, probability = inferer.coarse_round(volume)
            coarse_s = time.perf_counter() - start
            fine_s = []
            for _ in range(cfg.rounds):
                start = time.perf_counter()
                _, probability = inferer.fine_round(volume, probability, forced)
                fine_s.append(time.perf_counter() - start)
            stacks = {p: active_stacks(forced, p) for p in models}
        else:
            prediction = inferer(volume)
            coarse_s = prediction.rounds[0]["seconds"]
            fine_s = [r["seconds"] for r in prediction.rounds[1:]]
            voxels = [r["voxels"] for r in prediction.rounds]
            print(f"stopped at round {prediction.stopped_round}; voxels per round {voxels}")
            stacks = None
        n_coarse = sum(shape[plane_axis(p)] for p in models)
        print(f"coarse (round 0): {coarse_s:.1f} s for {n_coarse} stacks ({coarse_s / n_coarse:.3f} s per stack)")
        if fine_s:
            n_fine = f" on {sum(stacks.values())} stacks {stacks}" if stacks else ""
            print(
                f"fine rounds: {len(fine_s)} in {sum(fine_s):.1f} s, {np.mean(fine_s):.1f} s per round{n_fine}; "
                f"rounds {[round(s, 1) for s in fine_s]}"
            )
        print(f"total: {coarse_s + sum(fine_s):.1f} s per volume")
        print(f"peak RSS {peak_rss_gb():.2f} GB (the inferer's volumes: estimate {estimate_gb:.2f} GB)")
        if device.type == "cuda":
            print(f"peak CUDA memory allocated {torch.cuda.max_memory_allocated(device) / 1e9:.2f} GB")

    if args.estimate_shape:
        estimate(models, tuple(args.estimate_shape), cfg, device, args.repeats)
        print(f"peak RSS {peak_rss_gb():.2f} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
