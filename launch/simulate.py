r"""Simulate TrackML events in the challenge's CSV format.

    python launch/simulate.py --out=data/sim --events=10 --mu=200 --seed=0 \
        [--track_fraction=0.1] [--noise=0.12] [--first_event=1000] [--compress]

Event ``i`` uses the seed ``(seed, i)``, so any event can be re-made alone and adding events never
changes earlier ones. Files are written atomically; an existing event is overwritten only whole.
"""

from __future__ import annotations

import _bootstrap  # noqa: F401
from absl import app, flags
from tqdm import tqdm

from cgnn_jax.sim.dataset import simulate_dataset

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output directory.", required=True)
flags.DEFINE_integer("events", 1, "Number of events.", lower_bound=1)
flags.DEFINE_float("mu", 200.0, "Pile-up (mean collisions per event); 200 as in TrackML.")
flags.DEFINE_integer("seed", 0, "Base seed.")
flags.DEFINE_float("track_fraction", 1.0, "Keep this random fraction of particles (0, 1].")
flags.DEFINE_float("noise", None, "Noise-hit fraction in [0, 1) (default: as in real events).")
flags.DEFINE_integer("first_event", 1000, "Event id of the first event.")
flags.DEFINE_bool("compress", False, "Write .csv.gz files.")


def main(argv: list[str]) -> None:
    del argv
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
    ):
        bar.set_postfix(hits=ev.n_hits)
        bar.update(1)
    bar.close()
    print(f"wrote {FLAGS.events} events to {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
