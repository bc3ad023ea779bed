"""ATSO: asynchronous teacher-student optimisation of RSTN models, with its baselines.

``ExperimentRunner(config).run()`` runs an experiment (``atso-med run --config experiment.yaml``,
``python -m monai.bundle run --config_file bundles/rstn_pancreas_ct/configs/atso.json
--experiment experiment.yaml``): supervised M0, the fully supervised upper bound, self-learning,
STSO and ATSO, each training being the RSTN bundle's train workflow and each prediction its
inference workflow, journaled in ``state.json`` so that a killed run resumes. The trainings
run in this process, in one worker process per local device, or on a Ray cluster
(:mod:`atso_med.atso.executors`, :mod:`atso_med.atso.distributed`); :mod:`atso_med.atso.layout`
names every path of the experiment folder. The modules follow the method's data flow, one step
each: :mod:`~atso_med.atso.generations` (the plan and each training's data list),
:mod:`~atso_med.atso.training_steps`, :mod:`~atso_med.atso.predictions`,
:mod:`~atso_med.atso.pseudo_labels`, :mod:`~atso_med.atso.evaluations` and
:mod:`~atso_med.atso.reports`; :mod:`~atso_med.atso.experiment` schedules them after
:mod:`~atso_med.atso.preflight`'s checks.
``ExperimentResults(folder)`` reads a finished experiment back (tables, per-case scores, overlays).
"""

from atso_med.atso.analysis import CaseScore, ExperimentResults
from atso_med.atso.config import STRATEGIES, ExperimentConfig, TrainingConfig
from atso_med.atso.distributed import RaySettings
from atso_med.atso.experiment import ExperimentRunner
from atso_med.atso.generations import build_plan, check_plan
from atso_med.atso.layout import ExperimentLayout
from atso_med.atso.steps import ModelRef, PlanInputs, Step

__all__ = [
    "STRATEGIES",
    "CaseScore",
    "ExperimentConfig",
    "ExperimentLayout",
    "ExperimentResults",
    "ExperimentRunner",
    "ModelRef",
    "PlanInputs",
    "RaySettings",
    "Step",
    "TrainingConfig",
    "build_plan",
    "check_plan",
]
