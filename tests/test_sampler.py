"""The training draw: every stack alike by default; ``labeled_share`` weights the labeled cases' stacks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from atso_med.data import SliceStackDataset, training_sampler
from atso_med.errors import ConfigError
from atso_med.transforms import CTPreprocessingd


@pytest.fixture(scope="module")
def stacks(phantom_dataset) -> SliceStackDataset:
    dataset = phantom_dataset(cases=5, seed=4)
    cases = json.loads(dataset.read_text())["cases"]
    items = [
        {"id": c["id"], "image": str(dataset.parent / c["image"]), "label": str(dataset.parent / c["label"])}
        for c in cases
    ]
    items[0]["source"] = "labeled"
    for item in items[1:]:
        item["source"] = "pseudo"
    return SliceStackDataset(items, CTPreprocessingd(), "Z")


def test_the_default_draw_is_the_uniform_one_rstn_trains_with(stacks):
    drawn = list(training_sampler(stacks, 50, seed=3))
    expected = list(torch.utils.data.RandomSampler(stacks, num_samples=50, generator=torch.Generator().manual_seed(3)))
    assert drawn == expected


def test_labeled_share_is_the_share_of_draws_from_labeled_cases(stacks):
    labeled = {i for i, (v, _) in enumerate(stacks.samples) if stacks.volumes[v]["source"] == "labeled"}
    uniform = len(labeled) / len(stacks)
    assert uniform < 0.35
    for share in (0.5, 0.8):
        drawn = list(training_sampler(stacks, 4000, seed=1, labeled_share=share))
        assert np.mean([i in labeled for i in drawn]) == pytest.approx(share, abs=0.03)
    with pytest.raises(ConfigError, match="labeled_share must be in"):
        training_sampler(stacks, 10, seed=1, labeled_share=1.5)
