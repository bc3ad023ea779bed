"""Ignite handlers for RSTN training: model export, the stage-S+I snapshot, resume."""

from atso_med.handlers.model_export import ModelExportHandler, StageSnapshotHandler
from atso_med.handlers.resume import ResumeHandler, attach_resume

__all__ = ["ModelExportHandler", "ResumeHandler", "StageSnapshotHandler", "attach_resume"]
