"""Data: the dataset contract, splits, CT readers, verification and the synthetic phantom."""

from atso_med.data.nifti import save_nifti, write_text_atomic
from atso_med.data.volume import Volume

__all__ = ["Volume", "save_nifti", "write_text_atomic"]
