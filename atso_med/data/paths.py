"""Input paths as datasets and data lists give them: resolved against their file's folder, and
found on disk when they differ from the stored name only by Unicode normalisation.

macOS stores file names decomposed (NFD: ``e`` + combining accent) while most editors and Linux
tools write composed text (NFC: one ``é``), so a ``dataset.json`` written on one system may name
``café.nii.gz`` in the other form than the disk does. The bytes differ, the names do not.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

__all__ = ["on_disk_spelling", "resolve_input_path"]


def on_disk_spelling(path: str | os.PathLike) -> Path:
    """The existing path that ``path`` names, allowing for NFC / NFD differences.

    Args:
        path: an absolute path.

    Returns:
        ``path`` itself if it exists or no unique spelling is found on disk; otherwise the path
        whose components are spelled as on disk.
    """
    path = Path(path)
    if path.exists() or not path.is_absolute():
        return path
    found = Path(path.anchor)
    for part in path.parts[1:]:
        candidate = found / part
        if not candidate.exists():
            wanted = unicodedata.normalize("NFC", part)
            try:
                matches = [entry for entry in found.iterdir() if unicodedata.normalize("NFC", entry.name) == wanted]
            except OSError:  # not a folder, or not readable: the caller reports the missing path
                return path
            if len(matches) != 1:
                return path
            candidate = matches[0]
        found = candidate
    return found


def resolve_input_path(path: str | os.PathLike, root: str | os.PathLike) -> Path:
    """An input path of a dataset.json or data list, made absolute against ``root`` (its folder).

    Args:
        path: the stored path; an absolute one stays as given, ``~`` is expanded.
        root: the folder of the file that stores it.

    Returns:
        The absolute path, spelled as on disk (see :func:`on_disk_spelling`).
    """
    return on_disk_spelling((Path(root) / Path(path).expanduser()).resolve())
