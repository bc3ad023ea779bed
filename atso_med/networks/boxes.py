"""Boxes of RSTN's fine half: the bounding box of a mask plus margins, and the training margins.

Boxes are ``(top, bottom, left, right)`` with ``top``/``left`` inclusive and
``bottom``/``right`` exclusive, so a box's crop is ``x[..., top:bottom, left:right]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from atso_med.errors import ConfigError

__all__ = ["DEFAULT_MARGIN", "box_from_mask", "equalize_boxes", "mask_boxes", "sample_training_margins"]

#: Margin in pixels on each side of a box when none is given (the reference's test margin).
DEFAULT_MARGIN = 20


def _as_margins(margins: int | Sequence[int] | torch.Tensor | None, batch: int) -> torch.Tensor:
    """Normalises margins to a CPU int64 (B, 4) tensor (top, bottom, left, right)."""
    if margins is None:
        margins = DEFAULT_MARGIN
    if isinstance(margins, bool):
        raise ConfigError(f"margins must be an int or a (B, 4) tensor, got {margins!r}")
    if isinstance(margins, int):
        out = torch.full((batch, 4), int(margins), dtype=torch.int64)
    else:
        out = torch.as_tensor(margins).detach().to("cpu")
        if out.is_floating_point() and not torch.equal(out, out.round()):
            raise ConfigError("margins must be whole numbers of pixels")
        out = out.to(torch.int64)
        if out.ndim == 0 or out.shape == (4,):
            out = out.expand(batch, 4)
        elif out.shape != (batch, 4):
            raise ConfigError(
                f"margins must be an int, 4 values or a ({batch}, 4) tensor, got shape {tuple(out.shape)}"
            )
    if bool((out < 0).any()):
        raise ConfigError(f"margins must be >= 0, got {out.tolist()}")
    return out.clone()


def box_from_mask(
    mask: torch.Tensor, margins: int | Sequence[int] | torch.Tensor | None = DEFAULT_MARGIN
) -> torch.Tensor:
    """Bounding box of each sample's mask, joint over channels, widened and clipped.

    Args:
        mask: (B, C, H, W) or (B, H, W); non-zero = inside.
        margins: pixels added on each side: an int for all sides, 4 values
            (top, bottom, left, right) for every sample, or a (B, 4) tensor; ``None`` = 20.

    Returns:
        int64 (B, 4) ``(top, bottom, left, right)`` on the mask's device, bottom/right
        exclusive and clipped to the image. A sample whose mask is empty gets the whole
        image ``(0, H, 0, W)``.

    Raises:
        ValueError: if the mask is not 3D or 4D.
        ConfigError: if the margins are malformed or negative.
    """
    if hasattr(mask, "as_tensor"):  # MONAI MetaTensor: boxes need no metadata
        mask = mask.as_tensor()
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)
    if mask.ndim != 4:
        raise ValueError(f"box_from_mask expects a (B, C, H, W) or (B, H, W) mask, got {tuple(mask.shape)}")
    m = _as_margins(margins, mask.shape[0])
    return mask_boxes(mask.detach() != 0, m).to(mask.device)


def mask_boxes(inside: torch.Tensor, margins: torch.Tensor) -> torch.Tensor:
    """The box arithmetic of :func:`box_from_mask`, in code TorchScript compiles (the exported RSTN uses it).

    Args:
        inside: bool (B, C, H, W) masks.
        margins: int64 (B, 4) CPU margins ``(top, bottom, left, right)``.

    Returns:
        int64 (B, 4) CPU boxes, as :func:`box_from_mask` describes them.
    """
    height, width = inside.shape[2], inside.shape[3]
    cpu = torch.device("cpu")
    rows = inside.any(dim=3).any(dim=1).to(cpu)  # (B, H)
    cols = inside.any(dim=2).any(dim=1).to(cpu)  # (B, W)
    nonempty = rows.any(dim=1)
    # argmax of a bool row gives the first True; on the flipped row it gives the last.
    top = rows.to(torch.uint8).argmax(dim=1)
    bottom = height - rows.flip(1).to(torch.uint8).argmax(dim=1)
    left = cols.to(torch.uint8).argmax(dim=1)
    right = width - cols.flip(1).to(torch.uint8).argmax(dim=1)
    boxes = torch.stack(
        [
            (top - margins[:, 0]).clamp(min=0),
            (bottom + margins[:, 1]).clamp(max=height),
            (left - margins[:, 2]).clamp(min=0),
            (right + margins[:, 3]).clamp(max=width),
        ],
        dim=1,
    )
    full = torch.tensor([0, height, 0, width], dtype=torch.int64)
    return torch.where(nonempty[:, None], boxes, full)


def equalize_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Grows every box to the largest height and width among them, staying inside the image.

    Each box keeps its centre where the image allows and is shifted inwards where it does not, so
    it still contains the box it grew from.

    Args:
        boxes: int64 (B, 4) ``(top, bottom, left, right)``, bottom/right exclusive.
        height: image height.
        width: image width.

    Returns:
        int64 (B, 4) boxes of one common size, on the input's device.
    """
    cpu = boxes.detach().to("cpu")
    if not len(cpu):
        return boxes

    def grow(start: torch.Tensor, stop: torch.Tensor, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
        size = int((stop - start).max())
        first = (start - (size - (stop - start)) // 2).clamp(min=0).clamp(max=limit - size)
        return first, first + size

    top, bottom = grow(cpu[:, 0], cpu[:, 1], height)
    left, right = grow(cpu[:, 2], cpu[:, 3], width)
    return torch.stack([top, bottom, left, right], dim=1).to(boxes.device)


def sample_training_margins(
    batch_size: int,
    generator: torch.Generator | None = None,
    fixed_margin: int = DEFAULT_MARGIN,
    max_margin: int = 40,
    fixed_probability: float = 0.5,
) -> torch.Tensor:
    """Draws training margins as the reference does.

    With probability ``fixed_probability`` a sample gets ``fixed_margin`` on all sides, otherwise each
    side gets an independent integer uniform in ``[0, max_margin]``.

    Args:
        batch_size: number of samples.
        generator: CPU generator for reproducible draws; ``None`` uses the global RNG.
        fixed_margin: the all-sides margin (20 in the reference).
        max_margin: upper bound (inclusive) of a random side (40 in the reference).
        fixed_probability: probability of the all-sides margin.

    Returns:
        int64 (B, 4) margins (top, bottom, left, right).

    Raises:
        ConfigError: on a negative size/margin or a probability outside [0, 1].
    """
    if int(batch_size) < 0 or int(fixed_margin) < 0 or int(max_margin) < 0:
        raise ConfigError("batch_size, fixed_margin and max_margin must be >= 0")
    if not 0.0 <= float(fixed_probability) <= 1.0:
        raise ConfigError(f"fixed_probability must be in [0, 1], got {fixed_probability!r}")
    fixed = torch.rand(int(batch_size), generator=generator) < fixed_probability
    random = torch.randint(0, int(max_margin) + 1, (int(batch_size), 4), generator=generator)
    return torch.where(fixed[:, None], torch.full_like(random, int(fixed_margin)), random)
