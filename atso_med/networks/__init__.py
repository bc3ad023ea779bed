"""atso_med.networks."""
