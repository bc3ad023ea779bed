"""Engines: the RSTN training workflow (recipes, stage schedule, batch preparation, argument checks,
checkpoints and run state) and the prediction engine."""

from atso_med.engines.bundle_runner import install_command_line_errors
from atso_med.engines.checkpoints import (
    RunState,
    attach_resume,
    check_state_matches,
    latest_checkpoint,
    load_checkpoint,
    newest_checkpoint,
    save_model_atomic,
)
from atso_med.engines.prediction_folder import PredictionEngine, check_prediction_run
from atso_med.engines.recipes import RECIPES, TrainingRecipe, build_optimizer, check_initialization, resolve_recipe
from atso_med.engines.rstn_training import check_training_args, prepare_rstn_batch
from atso_med.engines.schedule import STAGES, StageSchedule

__all__ = [
    "RECIPES",
    "STAGES",
    "PredictionEngine",
    "RunState",
    "StageSchedule",
    "TrainingRecipe",
    "attach_resume",
    "build_optimizer",
    "check_initialization",
    "check_prediction_run",
    "check_state_matches",
    "check_training_args",
    "install_command_line_errors",
    "latest_checkpoint",
    "load_checkpoint",
    "newest_checkpoint",
    "prepare_rstn_batch",
    "resolve_recipe",
    "save_model_atomic",
]
