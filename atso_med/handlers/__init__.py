"""Ignite handlers for RSTN training: stage schedule, model export."""

from atso_med.handlers.export import ModelExportHandler
from atso_med.handlers.stage import StageScheduleHandler

__all__ = ["ModelExportHandler", "StageScheduleHandler"]
