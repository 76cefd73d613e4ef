"""Imported first by every launch script.

Makes ``import cgnn_jax`` work from a checkout that was not pip-installed, and puts the checkout
on the path so that config files can import each other (``from configs import default``).
"""

import sys
from pathlib import Path

_root = Path(__file__).resolve().parent.parent
sys.path.append(str(_root))

try:
    import cgnn_jax  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(_root))
