"""JAX's persistent compilation cache for the launch scripts and notebooks.

A launch script spends most of a short run compiling (the embedding, the GNN and the unrolled
clustering of each padding bucket). With the cache on, the compiled executables are kept on disk
and a later process with the same shapes, code and JAX version loads them instead.

Location, first that is set: the ``path`` argument, ``$CGNN_JAX_CACHE_DIR``, then
``$XDG_CACHE_HOME/cgnn_jax/jax`` (default ``~/.cache/cgnn_jax/jax``). ``CGNN_JAX_CACHE_DIR=off``
(or ``0``, or empty) turns it off. Entries are keyed by JAX on the computation, the compile
options, the backend and the JAX version, so an upgrade or another machine never loads a stale
one; JAX writes each entry to a temporary file and renames it into place, so two processes
sharing the folder never read a half-written entry.
"""

from __future__ import annotations

import os
from pathlib import Path

_DISABLED = {"", "0", "off", "none", "false"}


def default_cache_dir() -> Path | None:
    """The cache folder the environment asks for (``None``: turned off)."""
    env = os.environ.get("CGNN_JAX_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in _DISABLED else Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cgnn_jax" / "jax"


def enable_compilation_cache(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache in ``path`` (see the module docstring).

    Returns the folder in use, or ``None`` when turned off or not creatable (the cache is an
    optimisation: a read-only home only costs compile time).
    """
    folder = Path(path).expanduser() if path is not None else default_cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(folder))
    # cache every executable: ours compile in 0.1-2 s each, and there are dozens
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder
