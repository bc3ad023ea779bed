"""atso_med.inferers."""
