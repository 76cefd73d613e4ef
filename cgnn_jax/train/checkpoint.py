"""Orbax checkpoints that carry their config and a format version.

Layout: ``<workdir>/checkpoints/<step>/{state, meta}``. ``meta`` is JSON:
``{"format": "cgnn_jax", "version": FORMAT_VERSION, "kind": ..., "config": {...}, ...}``;
``state`` is the parameter pytree (and optimiser state when training). Restoring checks ``meta``
first, so an old or foreign checkpoint fails with a clear :class:`CheckpointError` before any
array is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

FORMAT_NAME = "cgnn_jax"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, of another version or not a cgnn_jax one."""


def _manager(directory: Path, max_to_keep: int | None = 3) -> ocp.CheckpointManager:
    return ocp.CheckpointManager(
        directory.resolve(),
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
    )


def save_checkpoint(
    directory: str | Path,
    step: int,
    state: Any,
    *,
    kind: str,
    config: dict,
    extra: dict | None = None,
    max_to_keep: int | None = 3,
) -> Path:
    """Save ``state`` (a pytree of arrays) with its metadata as step ``step`` under ``directory``.

    Orbax writes into a temporary folder and renames it when complete, so an interrupted save
    leaves the previous checkpoint intact.
    """
    directory = Path(directory)
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "step": int(step),
        **(extra or {}),
    }
    with _manager(directory, max_to_keep) as mgr:
        mgr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        mgr.wait_until_finished()
    return directory / str(int(step))


def latest_step(directory: str | Path) -> int | None:
    """The newest complete step under ``directory``, or ``None``."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    with _manager(directory, None) as mgr:
        return mgr.latest_step()


def read_meta(directory: str | Path, step: int | None = None) -> tuple[int, dict]:
    """``(step, meta)`` of a checkpoint, validated; raises :class:`CheckpointError`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    step = latest_step(directory) if step is None else step
    if step is None:
        raise CheckpointError(f"{directory}: holds no complete checkpoint")
    meta_dir = directory / str(step) / "meta"
    try:
        with _manager(directory, None) as mgr:
            meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # orbax raises many types on damaged files
        raise CheckpointError(f"{meta_dir}: unreadable checkpoint metadata ({e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{meta_dir}: not a cgnn_jax checkpoint (format={meta.get('format')!r})"
            if isinstance(meta, dict)
            else f"{meta_dir}: not a cgnn_jax checkpoint"
        )
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{meta_dir}: checkpoint format version {meta.get('version')!r}, this cgnn_jax reads "
            f"version {FORMAT_VERSION}; retrain or use the matching cgnn_jax release"
        )
    return int(step), meta


def restore_checkpoint(
    directory: str | Path,
    step: int | None = None,
    *,
    kind: str | None = None,
    target: Any = None,
) -> tuple[Any, dict]:
    """``(state, meta)`` of the checkpoint at ``step`` (default: latest) under ``directory``.

    Args:
      kind: if given, the checkpoint's ``meta["kind"]`` must match.
      target: an abstract or concrete pytree with the expected structure (optional); a mismatch
        raises :class:`CheckpointError`.
    """
    directory = Path(directory)
    step, meta = read_meta(directory, step)
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(
            f"{directory / str(step)}: a {meta.get('kind')!r} checkpoint, expected {kind!r}"
        )
    try:
        with _manager(directory, None) as mgr:
            arg = (
                ocp.args.StandardRestore(target)
                if target is not None
                else ocp.args.StandardRestore()
            )
            state = mgr.restore(step, args=ocp.args.Composite(state=arg))["state"]
    except Exception as e:
        raise CheckpointError(f"{directory / str(step) / 'state'}: cannot restore ({e})") from e
    return state, meta
