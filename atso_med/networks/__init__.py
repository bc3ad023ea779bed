"""Networks of atso-med: FCN-8s, the RSTN coarse-to-fine segmenter, presets and initialisation.

``build_rstn("full")`` is the published network (VGG16-width FCN-8s pair, 268,555,786
parameters of which 268,550,602 trainable); ``"small"`` and ``"tiny"`` shrink the trunk and
fc6/fc7 for CPU demos and tests.
"""

from __future__ import annotations

from atso_med.devices import resolve_device
from atso_med.networks.activation import CLASS_ACTIVATIONS, class_probabilities
from atso_med.networks.boxes import DEFAULT_MARGIN, box_from_mask, equalize_boxes, sample_training_margins
from atso_med.networks.fcn import FCN8s, bilinear_kernel
from atso_med.networks.initialization import initialize_rstn, load_state_file, parameter_groups
from atso_med.networks.plane_models import (
    MODEL_FILE,
    StoredClasses,
    class_names_for,
    load_model_sets,
    load_plane_models,
    plane_model_files,
    stored_classes,
)
from atso_med.networks.presets import RSTN_PRESETS, build_rstn
from atso_med.networks.rstn import BACKBONES, FILL_LOGIT, MODES, RSTN, RSTNOutput, SaliencyTransform
from atso_med.networks.scriptable import PARTS, RSTNPart, ScriptableRSTN
from atso_med.networks.unet import UNet2d
from atso_med.networks.weight_files import check_state_matches, load_checkpoint, save_model_atomic

__all__ = [
    "BACKBONES",
    "CLASS_ACTIVATIONS",
    "DEFAULT_MARGIN",
    "FILL_LOGIT",
    "MODEL_FILE",
    "MODES",
    "PARTS",
    "RSTN",
    "RSTN_PRESETS",
    "FCN8s",
    "RSTNOutput",
    "RSTNPart",
    "SaliencyTransform",
    "ScriptableRSTN",
    "StoredClasses",
    "UNet2d",
    "bilinear_kernel",
    "box_from_mask",
    "build_rstn",
    "check_state_matches",
    "class_names_for",
    "class_probabilities",
    "equalize_boxes",
    "initialize_rstn",
    "load_checkpoint",
    "load_model_sets",
    "load_plane_models",
    "load_state_file",
    "parameter_groups",
    "plane_model_files",
    "resolve_device",
    "sample_training_margins",
    "save_model_atomic",
    "stored_classes",
]
