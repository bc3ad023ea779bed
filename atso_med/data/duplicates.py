"""One image under several case ids: found by file and by voxel content, and kept in one role.

A copy of a training image in the test set makes every reported DSC a lie, and a copy in two
reference folds breaks ATSO's rule that no model labels a case it trained on. NIH Pancreas-CT ships
such copies (cases 25 and 70 repeat case 2 under new DICOM UIDs): the files differ, the voxels do
not. Two cases are copies when they name the same file (and series), or when their decoded voxel
arrays are equal (:func:`voxel_fingerprint`).

Decoding every image is the slow part, so each fingerprint is cached in a JSON file keyed by the
image's path, series, size and modification time (``$ATSO_MED_CACHE``, else
``$XDG_CACHE_HOME/atso-med``, else ``~/.cache/atso-med``): ``verify`` fills it while it reads the
images anyway, and ``split``, ``train`` and ``run`` find the fingerprints there. An image that
changes on disk gets a new key and is decoded again.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from atso_med.errors import SplitError
from atso_med.files import read_json_or_none, write_text_atomic

if TYPE_CHECKING:
    from atso_med.data.dataset import Case, Dataset
    from atso_med.data.splits import Splits

__all__ = [
    "FingerprintCache",
    "check_copies_in_one_role",
    "copy_groups",
    "copy_role_problems",
    "find_copies",
    "image_fingerprints",
    "same_image_file",
    "voxel_fingerprint",
]

CACHE_FILE = "image_fingerprints.json"


def voxel_fingerprint(array: np.ndarray) -> str:
    """SHA-256 of an image's shape and voxel values (as float32), whatever its file format or dtype."""
    array = np.asarray(array)
    digest = hashlib.sha256(repr(tuple(int(s) for s in array.shape)).encode())
    flat = array.reshape(-1)
    step = 1 << 22  # hash in chunks: a CT converted whole to float32 would double its memory
    for start in range(0, flat.size, step):
        digest.update(np.ascontiguousarray(flat[start : start + step], dtype=np.float32).tobytes())
    return digest.hexdigest()


def _cache_dir() -> Path:
    if os.environ.get("ATSO_MED_CACHE"):
        return Path(os.environ["ATSO_MED_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "atso-med"


def _stat_key(case: Case) -> str | None:
    """What identifies the image's current content on disk; ``None`` when it does not exist."""
    path = Path(case.image)
    try:
        if path.is_dir():
            stats = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file())
        else:
            stat = path.stat()
            stats = [(stat.st_size, stat.st_mtime_ns)]
    except OSError:
        return None
    return hashlib.sha256(json.dumps([str(path.resolve()), case.series_uid, stats]).encode()).hexdigest()


class FingerprintCache:
    """Voxel fingerprints of images, by the key of their file's current state.

    Args:
        folder: where the cache file lives (default: the user's cache folder, see the module).
    """

    def __init__(self, folder: str | os.PathLike | None = None) -> None:
        self.path = Path(folder or _cache_dir()) / CACHE_FILE
        loaded = read_json_or_none(self.path)
        self.entries: dict[str, str] = dict(loaded) if isinstance(loaded, Mapping) else {}
        self.changed = False

    def get(self, case: Case) -> str | None:
        key = _stat_key(case)
        return None if key is None else self.entries.get(key)

    def put(self, case: Case, fingerprint: str) -> None:
        key = _stat_key(case)
        if key is not None and self.entries.get(key) != fingerprint:
            self.entries[key] = fingerprint
            self.changed = True

    def save(self) -> None:
        """Write the cache if it changed; a cache that cannot be written is only a slower next run."""
        if not self.changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(json.dumps(self.entries, indent=0) + "\n", self.path)
            self.changed = False
        except OSError:
            pass


def image_fingerprints(cases: Iterable[Case], cache: FingerprintCache | None = None) -> dict[str, str]:
    """Case id -> voxel fingerprint, from the cache or by decoding the image; unreadable images are left out.

    Args:
        cases: the cases.
        cache: the cache to read and fill (default: the user's).

    Returns:
        The fingerprints of every case whose image could be read.
    """
    from atso_med.data.readers import load_image
    from atso_med.errors import AtsoMedError

    cache = cache or FingerprintCache()
    out = {}
    for case in cases:
        fingerprint = cache.get(case)
        if fingerprint is None:
            try:
                fingerprint = voxel_fingerprint(load_image(case.image, series_uid=case.series_uid).array)
            except (AtsoMedError, OSError):
                continue  # verify reports the unreadable image; a copy of it cannot be told
            cache.put(case, fingerprint)
        out[case.id] = fingerprint
    cache.save()
    return out


def _file_key(case: Case) -> tuple[str, str | None]:
    # Two series of one DICOM folder, chosen by series_uid, are different images.
    return str(Path(case.image).resolve()), case.series_uid


def same_image_file(a: Case, b: Case) -> bool:
    """Whether two cases name the same image file (and, for a DICOM folder, the same series)."""
    return _file_key(a) == _file_key(b)


def copy_groups(dataset: Dataset, fingerprints: Mapping[str, str]) -> list[list[str]]:
    """Groups of two or more case ids that are the same image (same file and series, or same voxels).

    Args:
        dataset: the data set.
        fingerprints: case id -> voxel fingerprint (cases without one are compared by file only).

    Returns:
        Each group's ids in data-set order; groups in the order of their first id.
    """
    parent = {case.id: case.id for case in dataset.cases}

    def root(case_id: str) -> str:
        while parent[case_id] != case_id:
            parent[case_id] = parent[parent[case_id]]
            case_id = parent[case_id]
        return case_id

    first: dict[tuple, str] = {}
    for case in dataset.cases:
        keys = [("file", *_file_key(case))]
        if case.id in fingerprints:
            keys.append(("voxels", fingerprints[case.id]))
        for key in keys:
            if key in first:
                parent[root(case.id)] = root(first[key])
            else:
                first[key] = case.id
    groups: dict[str, list[str]] = {}
    for case in dataset.cases:
        groups.setdefault(root(case.id), []).append(case.id)
    return [ids for ids in groups.values() if len(ids) > 1]


def find_copies(
    dataset: Dataset, ids: Iterable[str] | None = None, cache: FingerprintCache | None = None
) -> list[list[str]]:
    """:func:`copy_groups` of a data set's cases (``ids``: only these), fingerprints from the cache or decoded."""
    wanted = None if ids is None else set(ids)
    cases = [c for c in dataset.cases if wanted is None or c.id in wanted]
    return copy_groups(dataset, image_fingerprints(cases, cache))


def _how_same(dataset: Dataset, a: str, b: str) -> str:
    return (
        "the same image file" if same_image_file(dataset.case(a), dataset.case(b)) else "the same image (equal voxels)"
    )


def copy_role_problems(dataset: Dataset, splits: Splits, groups: Sequence[Sequence[str]]) -> list[str]:
    """Copies that the splits put in different roles (labeled, a reference fold, test, validation).

    Returns:
        One message per pair of copies in two roles, naming both ids, their roles and files.
    """
    roles = splits.roles()
    problems = []
    for group in groups:
        placed = [i for i in group if i in roles]
        for a, b in itertools.pairwise(placed):
            if roles[a] != roles[b]:
                problems.append(
                    f"{a!r} ({roles[a]}, {dataset.case(a).image}) and {b!r} ({roles[b]}, {dataset.case(b).image}) "
                    f"are {_how_same(dataset, a, b)} in two roles; put copies in one role or leave one out"
                )
    return problems


def check_copies_in_one_role(dataset: Dataset, splits: Splits, cache: FingerprintCache | None = None) -> None:
    """Refuse splits that put two copies of an image in different roles (the test set's leak).

    Raises:
        SplitError: naming every pair of copies in two roles.
    """
    problems = copy_role_problems(dataset, splits, find_copies(dataset, splits.roles(), cache))
    if problems:
        raise SplitError("invalid splits: " + "; ".join(problems))
