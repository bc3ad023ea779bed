"""ATSO: asynchronous teacher-student optimisation of RSTN models, with its baselines.

``ATSOTrainer(config).run()`` runs an experiment (``atso-med run --config experiment.yaml``,
``python -m monai.bundle run --config_file bundles/rstn_pancreas_ct/configs/atso.json
--experiment experiment.yaml``): supervised M0, the fully supervised upper bound, self-learning,
STSO and ATSO, each training being the RSTN bundle's train workflow and each pseudo-labelling the
whole-volume predictor, journaled in ``state.json`` so that a killed run resumes.
``ExperimentResults(folder)`` reads a finished experiment back (tables, per-case scores, overlays).
"""

from atso_med.atso.analysis import CaseScore, ExperimentResults
from atso_med.atso.config import STRATEGIES, ExperimentConfig, TrainingConfig
from atso_med.atso.strategies import ModelRef, PlanInputs, Step, build_plan, check_plan
from atso_med.atso.trainer import ATSOTrainer

__all__ = [
    "ATSOTrainer",
    "CaseScore",
    "ExperimentConfig",
    "ExperimentResults",
    "ModelRef",
    "PlanInputs",
    "STRATEGIES",
    "Step",
    "TrainingConfig",
    "build_plan",
    "check_plan",
]
