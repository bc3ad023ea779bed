"""Files: JSON inputs read with an error that names the file, outputs written safely.

Every JSON file atso-med reads (data lists, dataset.json, splits, journals, statistics) is parsed
by :func:`read_json`, so a missing, unreadable or malformed one is refused the same way, as the
package's own error, never as a ``JSONDecodeError`` traceback.

Every file atso-med writes (models, predictions, pseudo labels, plans, journals, reports, figures)
goes through :func:`atomic_write`: the content is written to a temporary file beside the target
and renamed over it, so a reader (or a resumed run) never sees half a file. ``mkstemp`` creates
that temporary file with mode 0600; it gets ``0666 & ~umask`` (0644 under the usual umask 022)
before the rename, so colleagues on shared storage can open the outputs.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from atso_med.errors import ConfigError

__all__ = [
    "OutputPathError",
    "atomic_write",
    "check_output_file",
    "dataset_inputs",
    "default_file_mode",
    "json_with_keys",
    "read_json",
    "read_json_or_none",
    "write_text_atomic",
]


class OutputPathError(ConfigError):
    """An output path is one of the command's inputs, a folder, or an existing file of another kind."""


def read_json(path: str | os.PathLike, what: str, error: type[Exception] = ConfigError, **loads: Any) -> Any:
    """The content of a JSON input file.

    Args:
        path: the file.
        what: what the file is, for the message (``"data list"``, ``"splits file"``, ...).
        error: the exception to raise, the package's error for that kind of input.
        **loads: passed to :func:`json.loads` (an ``object_pairs_hook``, say).

    Returns:
        The parsed content.

    Raises:
        error: the file does not exist, cannot be read (permissions), or is not valid UTF-8 JSON.
    """
    file = Path(path)
    if not file.is_file():
        raise error(f"{what} {file} does not exist")
    try:
        return json.loads(file.read_text(encoding="utf-8"), **loads)
    except OSError as problem:
        raise error(f"{what} {file} cannot be read: {problem}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as problem:  # JSON is UTF-8 (RFC 8259)
        raise error(f"{what} {file} is not valid JSON: {problem}") from None


def read_json_or_none(path: str | os.PathLike) -> Any:
    """The content of a JSON file this package wrote before, or ``None`` if it is absent or unreadable.

    For files whose absence or damage is no error, only a reason to start them anew (an
    interrupted write, a resume marker).
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Give a temporary path to write; on success it replaces ``path`` in one rename.

    The temporary file sits in the target's folder (so :func:`os.replace` is atomic) and keeps
    the full suffix (``.nii.gz``), so writers that choose a format by suffix still work. It is
    removed if the body raises; the target is then left as it was.

    Args:
        path: the file to write; missing parent folders are created.

    Yields:
        The temporary path to write the content to.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix="".join(final.suffixes), dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (JSON, CSV, YAML) atomically.

    Returns:
        The path written.
    """
    with atomic_write(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(
    path: str | os.PathLike,
    inputs: Iterable[tuple[str, str | os.PathLike]],
    *,
    kind: str,
    force: bool = False,
    is_kind: Callable[[Path], bool] | None = None,
    option: str = "the output",
    force_option: str | None = "--force",
) -> Path:
    """Refuse, before any work, an output file that would destroy something.

    Refused: a path that is a folder; a path that is one of ``inputs`` (the same file, also
    through a link) or lies inside an input folder (a DICOM series); an existing file without
    ``force``; and, with ``force``, an existing file that ``is_kind`` does not recognise as a
    previous output of the same kind (``--force`` replaces an old report, never a dataset).

    Args:
        path: the output file.
        inputs: ``(what, path)`` of every input of the command (``("dataset", dataset.json)``,
            ``("image of case 'a'", ...)``); missing paths are fine.
        kind: what the output is, for messages ("splits file", "verify report").
        force: overwrite an existing output of the same kind.
        is_kind: tells whether an existing file is an output of this kind; ``None`` accepts any.
        option: how the user gave the path, for messages (``--out``).
        force_option: the option that replaces an earlier output, for messages; ``None`` when the
            command always replaces its own earlier outputs.

    Returns:
        The output path.

    Raises:
        OutputPathError: one of the cases above; the message names the output and the input.
    """
    out = Path(path)
    if out.is_dir():
        raise OutputPathError(f"{option} {out} is a folder; give the path of the {kind} file to write")
    resolved = out.resolve()
    for what, given in inputs:
        source = Path(given)
        if resolved == source.resolve() or _same_file(out, source):
            raise OutputPathError(f"{option} {out} is the {what}: inputs are never overwritten, choose another path")
        if source.is_dir() and resolved.is_relative_to(source.resolve()):
            raise OutputPathError(f"{option} {out} lies inside the {what} {source}: choose a path outside it")
    if out.exists():
        if not force:
            raise OutputPathError(f"{out} already exists; pass --force to overwrite it")
        if is_kind is not None and not is_kind(out):
            replaces = f"{force_option} overwrites" if force_option else "it replaces"
            raise OutputPathError(
                f"{out} exists and is not a {kind}; {replaces} only a previous {kind}, never another file"
            )
    return out


def json_with_keys(*keys: str) -> Callable[[Path], bool]:
    """An ``is_kind`` test for :func:`check_output_file`: a JSON object holding all ``keys``."""

    def test(path: Path) -> bool:
        data = read_json_or_none(path)
        return isinstance(data, dict) and all(key in data for key in keys)

    return test


def dataset_inputs(dataset, splits_path: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """``(what, path)`` of every file a dataset command reads: dataset.json, images, labels, splits.

    Args:
        dataset: a :class:`~atso_med.data.Dataset`.
        splits_path: the splits file the command reads, if any.
    """
    inputs: list[tuple[str, Path]] = []
    if dataset.path is not None:
        inputs.append(("dataset file", Path(dataset.path)))
    for case in dataset.cases:
        inputs.append((f"image of case {case.id!r}", Path(case.image)))
        if case.label is not None:
            inputs.append((f"label of case {case.id!r}", Path(case.label)))
    if splits_path is not None:
        inputs.append(("splits file", Path(splits_path)))
    return inputs


def check_outside_data_folder(output_dir: str | os.PathLike, data_set: str | os.PathLike | None, option: str) -> None:
    """Refuse an output folder that is the folder of a data set or lies inside it.

    Args:
        output_dir: the folder a command would write.
        data_set: the ``dataset.json`` the command reads, or its folder (``None``: no check).
        option: the option that named the folder, for the message.

    Raises:
        ConfigError: naming the folder and the data set's folder.
    """
    if data_set is None:
        return
    path = Path(data_set).resolve()
    root = path if path.is_dir() else path.parent
    folder = Path(output_dir).resolve()
    if folder == root or root in folder.parents:
        raise ConfigError(
            f"{option} {output_dir} is inside the data set folder {root}: outputs never go among the inputs; "
            "choose a folder outside it"
        )


def check_output_folder(output_dir: str | os.PathLike) -> None:
    """Refuse an output folder that cannot be created or written, before any work (nothing is created).

    Raises:
        ConfigError: naming the folder and the reason.
    """
    folder = Path(output_dir).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"the output folder {folder} cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"the output folder {folder} cannot be written: no write permission on {existing}")
