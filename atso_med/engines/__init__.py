"""Engines: RSTN's training (:class:`RSTNTrainer`: stages S -> I -> J, recipes, schedule, the checks
before a run, checkpoints and run state), the prediction engine, and the bundle runner."""

from atso_med.engines.bundle_runner import install_command_line_errors
from atso_med.engines.checkpoints import RunState, latest_checkpoint, newest_checkpoint
from atso_med.engines.prediction_folder import PredictionEngine, check_prediction_run
from atso_med.engines.recipes import RECIPES, TrainingRecipe, build_optimizer, check_initialization, resolve_recipe
from atso_med.engines.rstn_trainer import RSTNTrainer, prepare_rstn_batch
from atso_med.engines.schedule import StageSchedule
from atso_med.engines.training_checks import check_training_args

__all__ = [
    "RECIPES",
    "PredictionEngine",
    "RSTNTrainer",
    "RunState",
    "StageSchedule",
    "TrainingRecipe",
    "build_optimizer",
    "check_initialization",
    "check_prediction_run",
    "check_training_args",
    "install_command_line_errors",
    "latest_checkpoint",
    "newest_checkpoint",
    "prepare_rstn_batch",
    "resolve_recipe",
]
