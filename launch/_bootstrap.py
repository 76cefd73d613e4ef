"""Makes ``import cgnn_jax`` work when a launch script runs from a checkout without installing."""

import sys
from pathlib import Path

try:
    import cgnn_jax  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
