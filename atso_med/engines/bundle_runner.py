"""Running the bundle's workflows from Python, and the equivalent ``python -m monai.bundle run`` command."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from atso_med.errors import ConfigError, input_error_cause

BUNDLE_NAME = "rstn_pancreas_ct"


def bundle_root() -> Path:
    """The folder of the RSTN bundle.

    ``ATSO_MED_BUNDLE`` overrides the location; otherwise the ``bundles/`` folder of the source
    checkout that the package was installed from (``pip install -e``) is used.

    Raises:
        ConfigError: when the bundle cannot be found.
    """
    override = os.environ.get("ATSO_MED_BUNDLE")
    root = Path(override) if override else Path(__file__).resolve().parents[2] / "bundles" / BUNDLE_NAME
    if not (root / "configs" / "metadata.json").is_file():
        raise ConfigError(f"the RSTN bundle was not found at {root}; set ATSO_MED_BUNDLE to its folder")
    return root


def config_files(*names: str) -> list[str]:
    """Absolute paths of bundle config files by name (``"train"``, ``"multi_gpu_train"``, ...)."""
    root = bundle_root()
    return [str(root / "configs" / f"{name}.json") for name in names]


def bundle_arguments(configs: Sequence[str], overrides: Mapping[str, object]) -> list[str]:
    """The options of a ``python -m monai.bundle`` command on ``configs``, as a user types them.

    Args:
        configs: config files, later ones overlaid on earlier ones (several go as a JSON list).
        overrides: ``--KEY VALUE`` pairs: strings and paths as they are, other values as JSON
            (``False`` -> ``false``).

    Returns:
        ``["--config_file", ..., "--meta_file", ..., "--KEY", "VALUE", ...]``.
    """
    config_arg = configs[0] if len(configs) == 1 else json.dumps(list(configs))
    parts = ["--config_file", config_arg, "--meta_file", str(Path(configs[0]).parent / "metadata.json")]
    for key, value in overrides.items():
        parts += [f"--{key}", str(value) if isinstance(value, (str, os.PathLike)) else json.dumps(value)]
    return parts


def _top_level_keys(config_file: str | os.PathLike) -> set[str]:
    from atso_med.files import read_json

    content = read_json(Path(config_file), "bundle config")
    return set(content) if isinstance(content, Mapping) else set()


def check_bundle_keys(configs: Sequence[str], overrides: Mapping[str, object]) -> None:
    """Refuse a key that the bundle's config files do not define (a typo would be ignored silently).

    The keys of every config file outside the bundle's ``configs/`` folder (a settings overlay) and
    of ``overrides`` must be top-level keys of the bundle's own files among ``configs`` (for a nested
    id ``a#b``, ``a``).

    Raises:
        ConfigError: naming the first unknown key, close matches, and the known keys.
    """
    import difflib

    own = (bundle_root() / "configs").resolve()
    bundle_files = [c for c in configs if Path(c).resolve().parent == own] or list(configs[:1])
    known = set().union(*(_top_level_keys(c) for c in bundle_files))
    given = [(key, f"{Path(c).name}") for c in configs if c not in bundle_files for key in _top_level_keys(c)]
    given += [(key, "the overrides") for key in overrides]
    for key, source in given:
        if str(key).split("#")[0] not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=3)
            hint = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
            workflow = Path(bundle_files[-1]).stem
            raise ConfigError(
                f"unknown bundle key {key!r} in {source}{hint}; the {workflow} workflow's keys: {', '.join(sorted(known))}"
            )


def bundle_command(configs: Sequence[str], overrides: Mapping[str, object]) -> str:
    """The shell command that runs the same workflow by hand with ``python -m monai.bundle run``."""
    return shlex.join(["python", "-m", "monai.bundle", "run", *bundle_arguments(configs, overrides)])


@contextmanager
def user_errors():
    """Re-raise an :class:`~atso_med.errors.AtsoMedError` that MONAI's config parser wrapped in a ``RuntimeError``.

    MONAI reports a failing ``$`` expression as "Failed to evaluate ..." with the real error as its
    cause; the user needs the cause's message, not the expression.
    """
    try:
        yield
    except RuntimeError as error:
        cause = input_error_cause(error)
        if cause is None:
            raise
        raise cause from None


def _started_by_monai_bundle() -> bool:
    parts = Path(sys.argv[0]).parts if sys.argv and sys.argv[0] else ()
    return parts[-3:] == ("monai", "bundle", "__main__.py")


def install_command_line_errors() -> None:
    """Under ``python -m monai.bundle``: an input error ends the run with its message as one line.

    The bundle's ``initialize`` calls this first. An :class:`~atso_med.errors.AtsoMedError` that
    nobody catches (also when MONAI wrapped it in "Failed to evaluate ...") is printed as
    ``atso-med: error: <message>`` on stderr, without the traceback; any other error is a bug and
    keeps its traceback. Outside MONAI's command line (``atso-med``, Python, notebooks) nothing
    changes: callers get the exception.
    """
    if not _started_by_monai_bundle() or getattr(sys.excepthook, "atso_med", False):
        return
    previous = sys.excepthook

    def hook(kind, error, traceback) -> None:
        cause = input_error_cause(error)
        if cause is None:
            previous(kind, error, traceback)
        else:
            print(f"atso-med: error: {cause}", file=sys.stderr)

    hook.atso_med = True
    sys.excepthook = hook
    _check_command_line_keys(sys.argv[1:])


#: Options of ``python -m monai.bundle run`` itself, not bundle keys.
_MONAI_RUN_OPTIONS = frozenset(
    {"run_id", "init_id", "final_id", "meta_file", "config_file", "logging_file", "tracking", "args_file"}
)


def _check_command_line_keys(argv: Sequence[str]) -> None:
    """Refuse a ``--KEY`` of a ``monai.bundle run`` command line that the config files do not define."""
    keys, configs = [], []
    for index, token in enumerate(argv):
        if not token.startswith("--"):
            continue
        key, _, inline = token[2:].partition("=")
        if key == "config_file":
            value = inline or (argv[index + 1] if index + 1 < len(argv) else "")
            configs = json.loads(value) if value.startswith("[") else [value]
        elif key not in _MONAI_RUN_OPTIONS:
            keys.append(key)
    if configs:
        check_bundle_keys(configs, dict.fromkeys(keys))


def _not_the_logging_file_notice(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Logging file is set to False")


def initialize_workflow(configs: Sequence[str], overrides: Mapping[str, object], workflow_type: str = "train"):
    """The bundle's workflow, initialised and checked for the properties MONAI requires.

    The bundle's ``logging.conf`` is not applied: it would replace the logging of the caller (the
    command line, a notebook, an experiment's log file). MONAI's notice that it is skipped is
    dropped for the same reason: it would appear once per training.

    Args:
        configs: config files, later ones overlaid on earlier ones.
        overrides: top-level keys to override (``{"plane": "Z", "iterations": 100}``).
        workflow_type: ``"train"`` or ``"infer"``.

    Returns:
        The initialised ``monai.bundle.ConfigWorkflow``, ready to ``run()``.

    Raises:
        AtsoMedError: a bad configuration (unwrapped from MONAI's "Failed to evaluate" errors).
        ConfigError: a key the bundle does not define; when MONAI reports required bundle
            properties missing.
    """
    from monai.bundle import ConfigWorkflow

    check_bundle_keys(configs, overrides)
    monai_logger = logging.getLogger("monai.bundle.workflows")
    monai_logger.addFilter(_not_the_logging_file_notice)
    try:
        workflow = ConfigWorkflow(
            config_file=list(configs),
            meta_file=str(Path(configs[0]).parent / "metadata.json"),
            logging_file=False,
            workflow_type=workflow_type,
            **dict(overrides),
        )
    finally:
        monai_logger.removeFilter(_not_the_logging_file_notice)
    with user_errors():
        workflow.initialize()
        missing = workflow.check_properties()
    if missing:
        raise ConfigError(f"the bundle's {workflow_type} workflow lacks required properties: {missing}")
    return workflow


def run_workflow(configs: Sequence[str], overrides: Mapping[str, object], workflow_type: str = "train"):
    """Run a bundle workflow in this process and return it (its engines' states stay readable).

    Args:
        configs: config files, later ones overlaid on earlier ones.
        overrides: top-level keys to override (``{"plane": "Z", "iterations": 100}``).
        workflow_type: ``"train"`` or ``"infer"``.

    Returns:
        The finished ``monai.bundle.ConfigWorkflow``.

    Raises:
        AtsoMedError: a bad configuration.
        ConfigError: when MONAI reports required bundle properties missing.
    """
    logging.getLogger(__name__).info("equivalent command: %s", bundle_command(configs, overrides))
    workflow = initialize_workflow(configs, overrides, workflow_type)
    with user_errors():
        workflow.run()
        workflow.finalize()
    return workflow
