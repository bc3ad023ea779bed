"""atso_med.handlers."""
