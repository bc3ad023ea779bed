"""atso_med.transforms."""
