"""How an RSTN's class outputs become probabilities: one sigmoid per class, or a softmax over them.

``sigmoid`` (the default) treats each class one-vs-rest: the classes' maps are independent, and a
voxel may score high for two of them. ``softmax`` makes the classes of a voxel compete: the C
class logits and a background logit fixed at 0 share one softmax, so ``p_c = exp(z_c) / (1 +
sum_k exp(z_k))``. It has the same outputs and weights as the sigmoid head (C logits per slice) and
equals it for one class; its probabilities sum to at most 1 per voxel, so the probability of a
merged group is the sum of its classes' (the paper's class reduction sums a softmax's
probabilities the same way, and a loss on the sum then cannot tell which class of the group holds
the mass: only fine-labelled cases decide that, where independent sigmoids let the largest class
of a group take the whole group).
"""

from __future__ import annotations

import torch

from atso_med.errors import ConfigError

__all__ = ["CLASS_ACTIVATIONS", "check_class_activation", "class_probabilities"]

#: The heads an RSTN of several classes can have.
CLASS_ACTIVATIONS = ("sigmoid", "softmax")


def check_class_activation(activation: object) -> str:
    """The activation's name, checked.

    Raises:
        ConfigError: if it is not one of :data:`CLASS_ACTIVATIONS`.
    """
    if activation not in CLASS_ACTIVATIONS:
        raise ConfigError(f"unknown class_activation {activation!r}; expected one of {', '.join(CLASS_ACTIVATIONS)}")
    return str(activation)


def class_probabilities(logits: torch.Tensor, num_classes: int, softmax: bool) -> torch.Tensor:
    """Float32 probabilities of class-major logits.

    Args:
        logits: (B, C * S, H, W), class-major (the slices of class 1 first).
        num_classes: C.
        softmax: the classes of each slice and pixel share a softmax with a background logit of 0;
            otherwise one sigmoid per output (the same for C = 1).

    Returns:
        (B, C * S, H, W) float32 probabilities.
    """
    if not softmax or num_classes == 1:
        return torch.sigmoid(logits.float())
    batch, channels, height, width = logits.shape
    by_class = logits.float().reshape(batch, num_classes, channels // num_classes, height, width)
    with_background = torch.cat([torch.zeros_like(by_class[:, :1]), by_class], dim=1)
    return torch.softmax(with_background, dim=1)[:, 1:].reshape(batch, channels, height, width)
