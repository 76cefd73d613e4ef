r"""Train cgnn_jax models from an ml_collections config.

    python launch/train.py --config=configs/stage1.py --workdir=workdirs/stage1 \
        [--config.embedding.steps=1000 ...]

Runs the stages listed in ``config.stages`` and writes orbax checkpoints (with the config and a
format version) under ``--workdir``.
"""

from __future__ import annotations

import _bootstrap  # noqa: F401
from absl import app, flags, logging
from ml_collections import config_flags

from cgnn_jax.train import train_and_evaluate

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=False)
flags.DEFINE_string("workdir", None, "Where checkpoints and logs go.", required=True)
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # orbax logs every file at INFO
    train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
