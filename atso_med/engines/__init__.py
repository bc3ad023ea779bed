"""Engines: the RSTN training workflow's recipes, schedule, batch preparation, checkpoints and run state."""

from atso_med.engines.prediction import PredictionEngine, check_prediction_run
from atso_med.engines.recipes import RECIPES, TrainingRecipe, build_optimizer, check_initialization, resolve_recipe
from atso_med.engines.schedule import STAGES, StageSchedule
from atso_med.engines.training import (
    RunState,
    as_bool,
    attach_resume,
    check_state_matches,
    check_training_args,
    latest_checkpoint,
    load_checkpoint,
    newest_checkpoint,
    prepare_rstn_batch,
    read_datalist,
    save_model_atomic,
)

__all__ = [
    "PredictionEngine",
    "check_prediction_run",
    "RECIPES",
    "TrainingRecipe",
    "build_optimizer",
    "check_initialization",
    "resolve_recipe",
    "STAGES",
    "RunState",
    "StageSchedule",
    "as_bool",
    "attach_resume",
    "check_state_matches",
    "check_training_args",
    "latest_checkpoint",
    "load_checkpoint",
    "newest_checkpoint",
    "prepare_rstn_batch",
    "read_datalist",
    "save_model_atomic",
]
