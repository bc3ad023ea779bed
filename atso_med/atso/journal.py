"""``state.json``: the journal of finished steps that makes an experiment resumable.

The journal is rewritten atomically after every finished step (one plane's training, one
prediction or pseudo-labelling of a fold, one evaluation). A step is either in the journal, with
its result, or it is redone on resume; a kill at any moment therefore loses at most the step that
was running. Every step is deterministic (seeded training, fixed inference), so redoing it gives
what the uninterrupted run would have produced.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from atso_med.errors import ConfigError
from atso_med.files import read_json, write_text_atomic

JOURNAL_FILE = "state.json"
JOURNAL_VERSION = 1


class Journal:
    """Finished steps and their results, persisted in ``state.json``.

    Args:
        path: the journal file (read if it exists).
        plan_digest: digest of the plan this journal belongs to; an existing journal of another
            plan is refused (its steps would not mean the same thing).

    Raises:
        ConfigError: the file exists but is not a journal, or belongs to another plan.
    """

    def __init__(self, path: str | os.PathLike, plan_digest: str) -> None:
        self.path = Path(path)
        self.plan_digest = plan_digest
        self.data: dict[str, Any] = {
            "version": JOURNAL_VERSION,
            "plan_digest": plan_digest,
            "created": _now(),
            "updated": _now(),
            "steps": {},
            "order": [],
        }
        if self.path.is_file():
            loaded = read_json(self.path, "journal")
            if not isinstance(loaded, Mapping) or not isinstance(loaded.get("steps"), Mapping):
                raise ConfigError(f"{self.path} is not an atso-med journal")
            if loaded.get("plan_digest") != plan_digest:
                raise ConfigError(
                    f"{self.path} belongs to another plan (different strategies, generations, planes or splits); "
                    "it cannot be resumed with this configuration"
                )
            self.data = dict(loaded)

    @property
    def done(self) -> list[str]:
        """Ids of the finished steps, in the order they finished."""
        return list(self.data["order"])

    def is_done(self, step_id: str) -> bool:
        return step_id in self.data["steps"]

    def result(self, step_id: str) -> dict[str, Any]:
        """The recorded result of a finished step.

        Raises:
            KeyError: the step has not finished.
        """
        return self.data["steps"][step_id]["result"]

    def results(self) -> dict[str, dict[str, Any]]:
        """Step id -> result, for every finished step."""
        return {step_id: entry["result"] for step_id, entry in self.data["steps"].items()}

    def seconds(self, step_id: str) -> float:
        return float(self.data["steps"][step_id]["seconds"])

    def record(self, step_id: str, result: Mapping[str, Any], seconds: float) -> None:
        """Mark a step finished and rewrite the journal atomically."""
        self.data["steps"][step_id] = {"result": dict(result), "seconds": round(float(seconds), 3), "finished": _now()}
        if step_id not in self.data["order"]:
            self.data["order"].append(step_id)
        self.save()

    def save(self) -> Path:
        self.data["updated"] = _now()
        return write_text_atomic(json.dumps(self.data, indent=1, sort_keys=False) + "\n", self.path)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
