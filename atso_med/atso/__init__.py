"""atso_med.atso."""
