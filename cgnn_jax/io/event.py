"""The in-memory event: one pandas DataFrame per TrackML file part."""

from __future__ import annotations

import dataclasses

import pandas as pd


@dataclasses.dataclass
class Event:
    """One TrackML event.

    Attributes:
      event_id: the integer in ``eventNNNNNNNNN``.
      hits: ``[n_hits]`` rows, columns of :data:`cgnn_jax.io.schema.DTYPES` ``["hits"]``.
      cells: ``[n_cells]`` rows (several per hit), or ``None`` if not read.
      particles: ``[n_particles]`` rows, or ``None`` (test data has none).
      truth: ``[n_hits]`` rows aligned with ``hits`` by ``hit_id``, or ``None``.
    """

    event_id: int
    hits: pd.DataFrame
    cells: pd.DataFrame | None = None
    particles: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None

    @property
    def n_hits(self) -> int:
        return len(self.hits)

    def parts(self) -> dict[str, pd.DataFrame]:
        """The parts that are present, by name."""
        out = {"hits": self.hits}
        for name in ("cells", "particles", "truth"):
            df = getattr(self, name)
            if df is not None:
                out[name] = df
        return out
