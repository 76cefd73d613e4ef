r"""Train cgnn_jax models from an ml_collections config.

    python launch/train.py --config=configs/default.py:stage12 --workdir=workdirs/default \
        [--config.embedding.steps=1000 ...]

``--config`` is a config file, ``configs/default.py:<step>`` one step of the shipped model's
training (``configs/default.py``), ``configs/experiments/*.py`` the other recipes. Runs the stages listed in ``config.stages`` (:func:`cgnn_jax.train.train_and_evaluate`) and writes
orbax checkpoints (with the config and a format version) under ``--workdir``. Re-running the same
command resumes every unfinished run from its last checkpoint. ``configs/test.py`` trains every
stage at a toy size in about a minute.
"""

from __future__ import annotations

import _bootstrap  # noqa: F401
import _cli
from absl import flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints and logs go.", required=True)
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    del argv
    from cgnn_jax.train import train_and_evaluate

    train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
    # a long run: glibc's defaults (not measured otherwise)
    _cli.run(main, keep_memory=False, inputs=("config",), folders=("workdir",))
