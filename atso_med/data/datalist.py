"""MONAI data-list files: the ``{"training": [...], "validation": [...]}`` JSON a training run reads."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from atso_med.files import write_text_atomic


def write_datalist(path: str | os.PathLike, training: Sequence[Mapping], validation: Sequence[Mapping] = ()) -> Path:
    """Write a data list with absolute paths, atomically.

    Args:
        path: output JSON file.
        training: items with ``id``, ``image`` and ``label`` (and optionally ``source``).
        validation: labeled items for model selection.

    Returns:
        The path written.
    """

    def absolute(item: Mapping) -> dict:
        entry = dict(item)
        for field in ("image", "label"):
            if entry.get(field):
                entry[field] = str(Path(entry[field]).resolve())
        return entry

    content = {"training": [absolute(item) for item in training], "validation": [absolute(item) for item in validation]}
    return write_text_atomic(json.dumps(content, indent=2) + "\n", path)
