"""Reconstruction of whole datasets with the clustering GNN (:class:`PipelineMethod`,
:func:`reconstruct_dataset`): resumable, in worker processes, never mixing runs.

Inference only: nothing here imports :mod:`cgnn_jax.train`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from cgnn_jax.inference.pipeline import PRETRAINED_DIR, Pipeline
from cgnn_jax.io.event import Event


class PipelineMethod:
    """The learned model as a method of :func:`cgnn_jax.baselines.reconstruct.reconstruct_dataset`.

    An event method (``takes_event``: it reads hits and cells) that is picklable: sent to a
    worker process it carries only the checkpoint path and restores the model there, once.
    Its :meth:`run_key` fingerprints the model (the checkpoint files, or the parameters of a
    pipeline given in memory) so that saved per-event results are reused only by the same model.

    Args:
      checkpoint: the pipeline checkpoint (``None``: the pretrained default model).
      tree_dir: also write each event's cluster tree there (``event<ID>-tree.npz``).
      pipe: an already restored pipeline to use in this process.
    """

    takes_event = True
    parts = ("hits", "cells")
    __name__ = "cgnn"

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        tree_dir: str | Path | None = None,
        pipe: Pipeline | None = None,
    ) -> None:
        self.checkpoint = None if checkpoint is None else str(checkpoint)
        self.tree_dir = None if tree_dir is None else str(tree_dir)
        self._pipe = pipe
        self._from_memory = pipe is not None and checkpoint is None

    def __getstate__(self) -> dict[str, Any]:
        if self._from_memory:
            raise ValueError(
                "a pipeline given in memory cannot go to worker processes; pass its checkpoint"
            )
        return {**self.__dict__, "_pipe": None}

    @property
    def pipe(self) -> Pipeline:
        if self._pipe is None:
            self._pipe = Pipeline.restore(self.checkpoint)
        return self._pipe

    def run_key(self) -> dict[str, Any]:
        import hashlib

        from cgnn_jax.io.parts import directory_fingerprint

        if self._from_memory:
            h = hashlib.sha256()
            dense = self.pipe.dense
            for leaf in jax.tree_util.tree_leaves(
                (self.pipe.params, dense.params if dense is not None else None)
            ):
                h.update(np.asarray(leaf).tobytes())
            cfgs = [self.pipe.config, self.pipe.stage1_config]
            if dense is not None:
                cfgs.append(dense.config)
                h.update(f"dense_min_hits={self.pipe.dense_min_hits}".encode())
            for cfg in cfgs:
                h.update(cfg.to_json_best_effort(sort_keys=True).encode())
            model = f"params:{h.hexdigest()}"
        else:
            path = Path(self.checkpoint) if self.checkpoint is not None else PRETRAINED_DIR
            if not path.exists():
                raise FileNotFoundError(f"no such checkpoint: {path}")
            model = f"files:{directory_fingerprint(path)}"
        return {"model": model}

    def has_output(self, event_id: int) -> bool:
        """Whether what this method writes besides the submission (the tree) exists for
        ``event_id``: a saved part is only reused if it does."""
        return self.tree_dir is None or self._tree_path(event_id).is_file()

    def _tree_path(self, event_id: int) -> Path:
        return Path(self.tree_dir) / f"event{int(event_id):09d}-tree.npz"

    def __call__(self, event: Event) -> np.ndarray:
        if self.tree_dir is None:
            return self.pipe.reconstruct(event)
        from cgnn_jax.cluster.tree import write_tree

        tid, tree = self.pipe.reconstruct(event, return_tree=True)
        Path(self.tree_dir).mkdir(parents=True, exist_ok=True)
        write_tree(tree, self._tree_path(event.event_id))
        return tid


def reconstruct_dataset(
    pipe: Pipeline | None,
    data: str | Path,
    tree_dir: str | Path | None = None,
    progress: bool = True,
    parts_dir: str | Path | None = None,
    workers: int = 1,
    checkpoint: str | Path | None = None,
):
    """A submission (``event_id, hit_id, track_id``) for every event of a dataset.

    With ``parts_dir`` each event's submission is saved as soon as it is done and a re-run
    reuses only the parts made by the same model from input files with the same contents
    (see :mod:`cgnn_jax.io.parts`); the caller removes them once the final file is written
    (``cgnn_jax.baselines.reconstruct.part_store(parts_dir, method, {}).finish()``).

    Args:
      pipe: the pipeline (``None``: restore ``checkpoint``, in each worker process).
      data: a dataset (directory or zip; hits and cells are read, truth is not needed).
      tree_dir: also write each event's cluster tree (``event<ID>-tree.npz``).
      parts_dir: where the per-event parts go (default: none, no resuming).
      workers: events reconstructed in parallel processes (each restores ``checkpoint``; on a
        machine with few cores one process already keeps them busy).
      checkpoint: the pipeline checkpoint (default: the pretrained model).

    Raises:
      ValueError: ``data`` holds no events.
    """
    from cgnn_jax.baselines.reconstruct import reconstruct_dataset as run

    method = PipelineMethod(checkpoint, tree_dir, pipe)
    return run(data, method, workers=workers, progress=progress, parts_dir=parts_dir)
