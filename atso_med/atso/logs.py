"""An experiment's text log: the runner's messages, and every line a training or prediction prints.

Everything goes to the experiment's ``log.txt`` (:func:`experiment_log` for the runner's own
logger, :func:`output_to` for what MONAI, PyTorch and the bundle's handlers print), so that the
terminal (or notebook) shows only the progress bar and the summaries.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["experiment_log", "logger", "output_to"]

logger = logging.getLogger("atso_med.atso")


@contextlib.contextmanager
def experiment_log(log_file: Path) -> Iterator[None]:
    """Send the runner's log messages (logger ``atso_med.atso``, level INFO) to ``log_file`` meanwhile."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        handler.close()


def _drop_handlers_of(stream) -> None:
    """Remove log handlers that write to ``stream``: the next training would log into a closed file."""
    loggers = [logging.getLogger()] + [
        v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)
    ]
    for each in loggers:
        for handler in list(each.handlers):
            if isinstance(handler, logging.StreamHandler) and handler.stream is stream:
                each.removeHandler(handler)


@contextlib.contextmanager
def output_to(log_file: Path) -> Iterator[None]:
    """Send everything written to the process's stdout and stderr (MONAI's logs too) to ``log_file``.

    File descriptors 1 and 2 are redirected, so handlers created earlier that hold the original
    streams are caught as well; the progress bar writes to its own duplicate of the terminal.
    ``sys.stdout`` / ``sys.stderr`` are replaced too: in Jupyter they are not file descriptor 1 and 2
    but the kernel's streams, and the bundle's log handlers, created inside, would write to the notebook.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_file, "ab") as log, open(log_file, "a", encoding="utf-8", buffering=1) as text:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            _drop_handlers_of(text)
