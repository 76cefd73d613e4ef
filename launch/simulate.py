r"""Simulate TrackML events in the challenge's CSV format.

    python launch/simulate.py --out=data/sim --events=10 --mu=200 --seed=0 \
        [--track_fraction=0.1] [--noise=0.12] [--first_event=1000] [--compress] \
        [--vertex_sigma_z=50] [--cluster_model=path_length]

Event ``i`` uses the seed ``(seed, i)``, so any event can be re-made alone and adding events never
changes earlier ones. Files are written atomically; an existing event is overwritten only whole.
"""

from __future__ import annotations

from pathlib import Path

import _bootstrap  # noqa: F401
import _cli
from absl import app, flags
from tqdm import tqdm

from cgnn_jax.sim.dataset import simulate_dataset
from cgnn_jax.sim.response import CLUSTER_MODELS
from cgnn_jax.sim.simulate import SimConfig
from cgnn_jax.utils.cpus import usable_cpus

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output directory.", required=True)
flags.DEFINE_integer("events", 1, "Number of events.", lower_bound=1)
flags.DEFINE_float("mu", 200.0, "Pile-up (mean collisions per event); 200 as in TrackML.")
flags.DEFINE_integer("seed", 0, "Base seed.")
flags.DEFINE_float("track_fraction", 1.0, "Keep this random fraction of particles (0, 1].")
flags.DEFINE_float("noise", None, "Noise-hit fraction in [0, 1) (default: as in real events).")
flags.DEFINE_integer("first_event", 1000, "Event id of the first event.")
flags.DEFINE_bool("compress", False, "Write .csv.gz files.")
flags.DEFINE_float(
    "vertex_sigma_z",
    None,
    "Luminous region: RMS (mm) of the collisions' z along the beam, each collision's particles "
    "sharing its vertex (default: the real event's own vertices, about 6 mm).",
)
flags.DEFINE_enum(
    "cluster_model",
    SimConfig().cluster_model,
    list(CLUSTER_MODELS),
    "How hits fire cells: 'staircase' (calibrated cluster sizes) or 'path_length' (pixel cells "
    "from the track's path length in each pixel, as the TrackML digitisation).",
)
flags.register_validator("mu", lambda v: v > 0, message="--mu must be positive")
flags.register_validator(
    "track_fraction", lambda v: 0 < v <= 1, message="--track_fraction must be in (0, 1]"
)
flags.register_validator(
    "noise", lambda v: v is None or 0 <= v < 1, message="--noise must be in [0, 1)"
)
flags.register_validator(
    "vertex_sigma_z",
    lambda v: v is None or 0 <= v < float("inf"),
    message="--vertex_sigma_z must be a finite length >= 0 (mm)",
)
flags.register_validator("first_event", lambda v: v >= 0, message="--first_event must be >= 0")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    out = Path(FLAGS.out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)  # fails here, before any work, on a bad path
    try:
        _simulate()
    except BaseException:
        if created and not any(out.iterdir()):
            out.rmdir()  # leave nothing behind
        raise


def _simulate() -> None:
    bar = tqdm(total=FLAGS.events, unit="event", desc="simulate")
    for _, ev in simulate_dataset(
        FLAGS.out,
        FLAGS.events,
        mu=FLAGS.mu,
        seed=FLAGS.seed,
        track_fraction=FLAGS.track_fraction,
        noise=FLAGS.noise,
        first_event=FLAGS.first_event,
        compress=FLAGS.compress,
        write_workers=min(4, usable_cpus()),
        vertex_sigma_z=FLAGS.vertex_sigma_z,
        config=SimConfig(cluster_model=FLAGS.cluster_model),
    ):
        bar.set_postfix(hits=ev.n_hits)
        bar.update(1)
    bar.close()
    print(f"wrote {FLAGS.events} events to {FLAGS.out}")


if __name__ == "__main__":
    _cli.run(main, uses_jax=False, fast_exit=True, folders=("out",))
