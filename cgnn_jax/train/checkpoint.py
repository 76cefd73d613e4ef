"""Versioned orbax checkpoints: moved to :mod:`cgnn_jax.inference.checkpoint` (re-exported)."""

from cgnn_jax.inference.checkpoint import (
    FORMAT_NAME,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    CheckpointError,
    latest_step,
    read_meta,
    restore_checkpoint,
    save_checkpoint,
    upgrade_meta,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "CheckpointError",
    "latest_step",
    "read_meta",
    "restore_checkpoint",
    "save_checkpoint",
    "upgrade_meta",
]
