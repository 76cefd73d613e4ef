"""Per-event result parts that a resumed run may reuse, and never from another run.

A long reconstruction writes each event's submission as soon as it is done, so that a killed
run resumes where it stopped. A part is only reused by a run that would make the same bytes:

* the *run key* (method, its options, the model's fingerprint, anything else that changes the
  output) names a sub-folder ``<root>/run-<key hash>/`` holding a ``run.json`` that spells it out;
* each part's name carries its event id and the fingerprint of that event's input files
  (:func:`cgnn_jax.io.event_fingerprints`): ``event<ID>-<input hash>.csv.gz``.

So an interrupted run on dataset A and a later run on dataset B with the same output path (or
the same data with another checkpoint or method) never see each other's parts: B recomputes.
Parts are written atomically (temporary file, then rename). :meth:`PartStore.finish` removes the
run's folder, and the root when nothing else is left in it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from cgnn_jax.io.atomic import atomic_write

PathLike = str | os.PathLike[str]

PARTS_FORMAT = 1


def _digest(obj: Any) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def directory_fingerprint(path: PathLike) -> str:
    """sha256 over the relative names and bytes of every file under ``path`` (or the file)."""
    p = Path(path)
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    for f in files:
        h.update(str(f.relative_to(p) if f != p else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 22), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


class PartStore:
    """The reusable per-event parts of one run (see the module docstring).

    Args:
      root: the parts folder (e.g. ``<out>.parts``); created on the first write.
      run_key: JSON-serialisable description of everything but the input that determines
        a part's content.
    """

    def __init__(self, root: PathLike, run_key: Mapping[str, Any]) -> None:
        self.root = Path(root)
        self.run_key = {"parts_format": PARTS_FORMAT, **dict(run_key)}
        self.dir = self.root / f"run-{_digest(self.run_key)[:16]}"

    def path(self, event_id: int, fingerprint: str) -> Path:
        """Where the part of ``event_id`` made from inputs with ``fingerprint`` lives."""
        return self.dir / f"event{int(event_id):09d}-{fingerprint[:16]}.csv.gz"

    def has(self, event_id: int, fingerprint: str) -> bool:
        return self.path(event_id, fingerprint).is_file()

    def _ensure_dir(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise FileExistsError(f"{self.root} exists and is not a folder of result parts")
        self.dir.mkdir(parents=True, exist_ok=True)
        meta = self.dir / "run.json"
        if not meta.exists():
            with atomic_write(meta, "w") as f:
                json.dump(self.run_key, f, indent=1, sort_keys=True, default=str)

    def write(self, event_id: int, fingerprint: str, sub: pd.DataFrame) -> Path:
        """Write one event's submission part atomically."""
        from cgnn_jax.io.write import write_submission

        self._ensure_dir()
        return write_submission(sub, self.path(event_id, fingerprint))

    def read(self, event_id: int, fingerprint: str) -> pd.DataFrame:
        from cgnn_jax.io.read import read_submission

        return read_submission(self.path(event_id, fingerprint))

    def finish(self) -> None:
        """Remove this run's parts, and the root folder if nothing else is left in it."""
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only if empty: other runs' parts stay
