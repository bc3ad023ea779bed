"""atso_med.losses."""
