"""Imported first by every launch script.

* Moves ``launch/`` to the end of ``sys.path``: Python puts a script's folder first, and
  ``launch/inspect.py`` would then shadow the standard library's ``inspect`` for numpy and jax.
  Keeping it last (not removing it) lets spawned worker processes, which inherit this path and
  re-import the script, still find this module.
* Makes ``import cgnn_jax`` work from a checkout that was not pip-installed, and puts the
  checkout on the path so that config files can import each other (``from configs import stage1``).
"""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here] + [
    str(_here.parent),
    str(_here),
]

try:
    import cgnn_jax  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(_here.parent))
