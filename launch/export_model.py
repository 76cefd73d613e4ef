"""Copy a trained pipeline into the package as the pretrained default model.

    python launch/export_model.py --workdir=workdirs/default [--out=cgnn_jax/pretrained/default]

The checkpoint is written to a temporary folder beside ``--out`` and swapped in only when
complete, so an interrupted export leaves the previous pretrained model intact.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import _bootstrap  # noqa: F401
import _cli
from absl import flags

from cgnn_jax.inference.pipeline import PRETRAINED_DIR

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Training workdir (or pipeline checkpoint).", required=True)
flags.DEFINE_string("out", str(PRETRAINED_DIR), "Destination folder.")


def main(argv: list[str]) -> None:
    del argv
    from cgnn_jax.inference import Pipeline

    pipe = Pipeline.restore(FLAGS.workdir)
    out = Path(FLAGS.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        pipe.save(tmp / "checkpoints", step=0)
        Pipeline.restore(tmp)  # check it reads back before replacing anything
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = out.with_name(f".{out.name}.old")
    if out.exists():
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"pretrained model -> {out} ({size / 1e6:.2f} MB)")


if __name__ == "__main__":
    _cli.run(main)
