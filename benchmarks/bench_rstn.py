"""RSTN speed and memory: training steps and inference passes per second, and peak memory.

Each configuration runs in its own subprocess, so the peak resident memory printed is that of the
configuration alone. Examples:

    python benchmarks/bench_rstn.py                                  # CPU, 2 threads, default grid
    python benchmarks/bench_rstn.py --device cuda --amp --batches 1 8 16
    python benchmarks/bench_rstn.py --sizes 512 --presets full --batches 1 --repeats 5

Targets (issue 3): on CPU with 2 threads, full size, 512x512, batch 1 and a 128 px fine box, a
training step no slower than the reference port's 7.1 s median, and the fine pass no more
expensive than a coarse pass over the crop it runs on; on an H100 with AMP, at least 30 training
samples/s at 512x512 with batching.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time


def measure(preset: str, size: int, batch: int, box: int, device: str, amp: bool, repeats: int, threads: int) -> dict:
    """Time one configuration in this process and return its figures."""
    import resource

    import torch

    from atso_med.losses import RSTNLoss
    from atso_med.networks import build_rstn, initialize_rstn, parameter_groups

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = initialize_rstn(build_rstn(preset), seed=0).to(device)
    optimizer = torch.optim.SGD(parameter_groups(model), lr=1e-4, momentum=0.99)
    loss_function = RSTNLoss()
    image = torch.rand(batch, 3, size, size, device=device)
    label = torch.zeros(batch, 3, size, size, device=device)
    inner = max(1, box - 40)  # the label square plus the fixed 20 px margins gives the fine box
    start = (size - inner) // 2
    label[:, :, start : start + inner, start : start + inner] = 1
    autocast = torch.autocast("cuda", enabled=amp and device.startswith("cuda"))
    scaler = torch.amp.GradScaler("cuda", enabled=amp and device.startswith("cuda"))

    def synchronize() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def timed(step) -> float:
        step()  # warm-up (allocator, cuDNN autotuning)
        synchronize()
        times = []
        for _ in range(repeats):
            begin = time.perf_counter()
            step()
            synchronize()
            times.append(time.perf_counter() - begin)
        return statistics.median(times)

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = loss_function(model(image, label=label, mode="I", margins=20), label)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    crop = image[..., start - 20 : start + inner + 20, start - 20 : start + inner + 20].contiguous()

    def coarse_pass() -> None:
        model.eval()
        with torch.inference_mode(), autocast:
            model.coarse_probability(image)

    def fine_pass() -> None:
        model.eval()
        with torch.inference_mode(), autocast:
            model.fine_probability(image, label, label, margin=20)

    def coarse_on_crop() -> None:
        model.eval()
        with torch.inference_mode(), autocast:
            model.coarse_probability(crop)

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    figures = {
        "preset": preset,
        "size": size,
        "batch": batch,
        "box": box,
        "device": device,
        "amp": amp and device.startswith("cuda"),
        "train_step_s": timed(train_step),
        "coarse_pass_s": timed(coarse_pass),
        "fine_pass_s": timed(fine_pass),
        "fcn_on_crop_s": timed(coarse_on_crop),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    figures["train_samples_per_s"] = batch / figures["train_step_s"]
    figures["inference_samples_per_s"] = batch / (figures["coarse_pass_s"] + figures["fine_pass_s"])
    if device.startswith("cuda"):
        figures["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["full", "small"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[512, 256])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--box", type=int, default=128, help="fine box side in pixels")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="CUDA mixed precision")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration (JSON) and print its figures
    args = parser.parse_args()

    if args.one:
        print(json.dumps(measure(**json.loads(args.one))))
        return

    header = f"{'preset':6} {'size':>4} {'batch':>5} {'train s/step':>12} {'train smp/s':>11} {'coarse s':>9} {'fine s':>7} {'fcn@crop s':>10} {'infer smp/s':>11} {'peak RSS GB':>11}"
    print(
        f"device {args.device}, amp {args.amp}, threads {args.threads}, fine box {args.box}px, median of {args.repeats}"
    )
    print(header)
    for preset in args.presets:
        for size in args.sizes:
            for batch in args.batches:
                config = dict(
                    preset=preset,
                    size=size,
                    batch=batch,
                    box=args.box,
                    device=args.device,
                    amp=args.amp,
                    repeats=args.repeats,
                    threads=args.threads,
                )
                result = subprocess.run(
                    [sys.executable, __file__, "--one", json.dumps(config)], check=False, capture_output=True, text=True
                )
                if result.returncode != 0:
                    print(f"{preset:6} {size:>4} {batch:>5} failed: {result.stderr.strip().splitlines()[-1]}")
                    continue
                f = json.loads(result.stdout.strip().splitlines()[-1])
                line = (
                    f"{preset:6} {size:>4} {batch:>5} {f['train_step_s']:>12.3f} {f['train_samples_per_s']:>11.2f} "
                    f"{f['coarse_pass_s']:>9.3f} {f['fine_pass_s']:>7.3f} {f['fcn_on_crop_s']:>10.3f} "
                    f"{f['inference_samples_per_s']:>11.2f} {f['peak_rss_gb']:>11.2f}"
                )
                if "peak_cuda_gb" in f:
                    line += f"  CUDA peak {f['peak_cuda_gb']:.2f} GB"
                print(line, flush=True)


if __name__ == "__main__":
    main()
