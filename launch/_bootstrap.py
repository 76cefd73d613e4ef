"""Imported first by every launch script.

* Removes ``launch/`` from ``sys.path``: Python puts a script's folder first on the path, and
  ``launch/inspect.py`` would then shadow the standard library's ``inspect`` for numpy and jax.
* Makes ``import cgnn_jax`` work from a checkout that was not pip-installed.
"""

import sys
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]

try:
    import cgnn_jax  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(_here.parent))
