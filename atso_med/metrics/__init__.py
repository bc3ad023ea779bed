"""atso_med.metrics."""
