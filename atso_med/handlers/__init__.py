"""Ignite handlers for RSTN training: stage schedule, model export, the stage-S+I snapshot, resume."""

from atso_med.handlers.model_export import ModelExportHandler, StageSnapshotHandler
from atso_med.handlers.resume import ResumeHandler
from atso_med.handlers.stage_schedule import StageScheduleHandler

__all__ = ["ModelExportHandler", "ResumeHandler", "StageScheduleHandler", "StageSnapshotHandler"]
