"""atso_med.engines."""
