r"""Print per-event statistics of a TrackML dataset (real or simulated).

    python launch/dataset_stats.py --data=DIR [--json_out=PATH]

Per event: hits, particles (with >= 1 hit), noise fraction, mean hits per particle, the share of
(particle, layer) pairs with two or more hits, and hits per volume (%).
"""

from __future__ import annotations

import json

import _bootstrap  # noqa: F401
import _cli
import pandas as pd
from absl import flags
from tqdm import tqdm

from cgnn_jax.analysis.fidelity import VOLUMES, event_stats
from cgnn_jax.io import atomic_write, iter_events, list_event_ids

FLAGS = flags.FLAGS
flags.DEFINE_string("data", None, "Dataset directory or .zip.", required=True)
flags.DEFINE_string("json_out", None, "Write the table as JSON here.")


def dataset_stats(data: str) -> pd.DataFrame:
    """One row of :func:`cgnn_jax.analysis.fidelity.event_stats` per event."""
    ids = list_event_ids(data)
    rows = [
        event_stats(ev)
        for ev in tqdm(
            iter_events(data, parts=("hits", "truth")), total=len(ids), desc="inspect", unit="event"
        )
    ]
    return pd.DataFrame(rows)


def main(argv: list[str]) -> None:
    del argv
    df = dataset_stats(FLAGS.data)  # bad data: one line (launch/_cli.py)
    cols = [
        "event_id",
        "hits",
        "particles",
        "noise_fraction",
        "mean_hits_per_particle",
        "double_hit_fraction",
    ]
    show = df[cols].rename(
        columns={
            "noise_fraction": "noise",
            "mean_hits_per_particle": "hits/particle",
            "double_hit_fraction": "2-hit layers",
        }
    )
    print(show.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    vols = df[["event_id"] + [f"vol{v}_share" for v in VOLUMES]].rename(
        columns={f"vol{v}_share": f"vol {v}" for v in VOLUMES}
    )
    print("\nhits per volume (% of the event's hits):")
    print(vols.to_string(index=False, float_format=lambda x: f"{x:.1f}"))
    if FLAGS.json_out:
        with atomic_write(FLAGS.json_out, "w") as f:
            json.dump(df.to_dict(orient="records"), f, indent=1)


if __name__ == "__main__":
    _cli.run(
        main, uses_jax=False, fast_exit=True, inputs=("data",), files=("json_out",), data=("data",)
    )
