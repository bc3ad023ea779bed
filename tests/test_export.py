"""Export as the MONAI model zoo checks it: TorchScript (``ckpt_export``) and ONNX (``onnx_export``).

Each exported model must give the PyTorch model's output on a sample, within float tolerance.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from bundle_files import META, TRAIN, bundle_argv
from monai.bundle import ckpt_export, onnx_export

from atso_med.errors import ConfigError
from atso_med.inferers import CoarseToFineInferer, InferenceConfig
from atso_med.networks import RSTNPart, build_rstn, initialize_rstn

ATOL = 1e-5


def _model_pt(tmp_path: Path, preset: str) -> tuple[Path, torch.nn.Module]:
    """A ``model.pt`` as the training writes it, and the PyTorch network it holds (eval mode)."""
    net = initialize_rstn(build_rstn(preset), seed=7).eval()
    path = tmp_path / "model.pt"
    torch.save({"network": net.state_dict(), "config": {"preset": preset}}, path)
    return path, net


def _sample(generator_seed: int, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(generator_seed))


def _bundle_model(ckpt: Path, preset: str) -> dict[str, str]:
    """The export commands' arguments that name the bundle and the trained model."""
    return {"ckpt_file": str(ckpt), "meta_file": META, "config_file": TRAIN, "key_in_ckpt": "network", "preset": preset}


@pytest.mark.parametrize("preset", ["tiny", "small", "unet_tiny", "unet_small"])
def test_ckpt_export_matches_pytorch(tmp_path: Path, preset: str) -> None:
    ckpt, net = _model_pt(tmp_path, preset)
    out = tmp_path / "model.ts"
    ckpt_export("network_def", filepath=str(out), **_bundle_model(ckpt, preset))
    extra = {"metadata.json": "", "train.json": ""}
    ts = torch.jit.load(str(out), _extra_files=extra)
    assert b'"network_data_format"' in extra["metadata.json"] and b'"network_def"' in extra["train.json"]

    image = _sample(0, (2, 3, 37, 45))  # odd sizes: U-Net padding and FCN-8s crops both at work
    mask = torch.zeros(2, 3, 37, 45, dtype=torch.bool)
    mask[0, 1, 10:14, 20:26] = True  # sample 1 stays empty: no fine pass, zeros
    score = _sample(1, (2, 3, 37, 45))
    with torch.no_grad():
        expected, got = net(image), ts(image)
        fine_expected = net.fine_probability(image, score, mask, margin=3)
        fine_got = ts.fine_probability(image, score, mask, margin=3)
    assert got.shape == (2, 6, 37, 45)
    torch.testing.assert_close(got, expected, atol=ATOL, rtol=0)
    torch.testing.assert_close(ts.coarse_probability(image), net.coarse_probability(image), atol=ATOL, rtol=0)
    torch.testing.assert_close(fine_got, fine_expected, atol=ATOL, rtol=0)
    outside = fine_got.clone()
    outside[0, :, 7:17, 17:29] = 0  # the box plus 3 px: computed there, nothing elsewhere
    assert fine_got[0, :, 7:17, 17:29].min() > 0 and not outside.any()


def test_ckpt_export_command_line_and_volume_inference(tmp_path: Path) -> None:
    """The model zoo's command on FCN-8s halves; the loaded model.ts runs the whole coarse-to-fine inference."""
    ckpt, net = _model_pt(tmp_path, "tiny")
    out = tmp_path / "model.ts"
    command = bundle_argv(
        "ckpt_export", TRAIN, "network_def", filepath=out, ckpt_file=ckpt, key_in_ckpt="network", preset="tiny"
    )
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ts = torch.jit.load(str(out))

    volume = _sample(2, (30, 34, 8)).numpy()
    config = InferenceConfig(rounds=2, stop_dsc=1.0, margin=4, batch_size=2)
    expected = CoarseToFineInferer({"Z": net}, config)(volume)
    got = CoarseToFineInferer({"Z": ts}, config)(volume)
    assert expected.mask.any() and len(got.rounds) == len(expected.rounds) == 3
    np.testing.assert_array_equal(got.mask, expected.mask)
    np.testing.assert_allclose(got.probability, expected.probability, atol=ATOL, rtol=0)


@pytest.mark.parametrize(("preset", "part"), [("tiny", "coarse"), ("unet_tiny", "fine"), ("unet_tiny", "saliency")])
def test_onnx_export_parts_match_pytorch(tmp_path: Path, preset: str, part: str) -> None:
    ckpt, net = _model_pt(tmp_path, preset)
    out = tmp_path / f"{part}.onnx"
    onnx_export(
        "network_part",
        filepath=str(out),
        **_bundle_model(ckpt, preset),
        export_part=part,
        input_shape=[1, 3, 32, 32],
        converter_kwargs={"dynamic_axes": {"x": {0: "batch", 2: "height", 3: "width"}}},
    )
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    module = getattr(net, part)
    for seed, shape in enumerate([(1, 3, 32, 32), (2, 3, 27, 41)]):  # a box crop has any size
        x = _sample(seed, shape)
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(got, module(x).numpy(), atol=ATOL, rtol=0)


def test_unknown_part_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown RSTN part 'head'; expected one of coarse, saliency, fine"):
        RSTNPart(build_rstn("tiny"), "head")
