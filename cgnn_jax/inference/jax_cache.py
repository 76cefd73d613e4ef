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

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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
    enable_export_cache(folder / "exports")
    return folder


# ---------------------------------------------------------------- traced programs (jax.export)
#
# The compilation cache skips XLA's compilation, not JAX's tracing: a fresh process still traces
# every jitted function (the unrolled tree with its Split/Stop modules, the GNN...), ~3 s of a
# whole run. With the cache on, :func:`cached_call` also keeps each traced program on disk as a
# serialized ``jax.export`` artifact, so a later process deserializes it instead of tracing; its
# compilation then hits the compilation cache. Keys cover the function's name, its static
# arguments, the shapes, dtypes and structure of its array arguments, the JAX version, the backend
# (cpu, gpu) and a hash of this package's source, so an edit to the code or an upgrade never reuses a stale program.

_EXPORT_DIR: Path | None = None
_LOADED: dict[str, Any] = {}
_SOURCE_HASH: str | None = None


def _source_hash() -> str:
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parents[1]
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root)).encode())
            h.update(f.read_bytes())
        _SOURCE_HASH = h.hexdigest()
    return _SOURCE_HASH


def cache_subdir(name: str) -> Path | None:
    """``<cache>/<name>`` when the launch scripts' cache is on (:func:`enable_compilation_cache`),
    else ``None``."""
    return None if _EXPORT_DIR is None else _EXPORT_DIR.parent / name


def enable_export_cache(folder: str | os.PathLike[str] | None) -> None:
    """Keep traced programs in ``folder`` (``None``: off); :func:`enable_compilation_cache`
    turns it on in ``<its folder>/exports``."""
    global _EXPORT_DIR
    _EXPORT_DIR = None if folder is None else Path(folder)
    _LOADED.clear()


def _key(name: str, static: tuple, args: tuple) -> str:
    import jax

    leaves, tree = jax.tree_util.tree_flatten(args)
    spec = [(tuple(np.shape(x)), str(np.result_type(x))) for x in leaves]
    platform = jax.default_backend()  # a home folder shared by a CPU and a GPU machine
    text = repr((name, static, str(tree), spec, jax.__version__, platform, _source_hash()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def cached_call(name: str, fn: Callable[..., Any], static: tuple, args: tuple) -> Any:
    """``fn(*static, *args)``; with the export cache on (:func:`enable_export_cache`), through a
    traced program kept on disk (traced once per key, by any process).

    ``fn`` is a ``jax.jit`` function whose first ``len(static)`` arguments are static (hashable,
    with a ``repr`` that says all they mean, e.g. flax modules and numbers); ``args`` are arrays
    or pytrees of arrays (``None`` allowed)."""
    if _EXPORT_DIR is None:
        return fn(*static, *args)
    key = _key(name, static, args)
    call = _LOADED.get(key)
    if call is None:
        call = _load_or_export(key, name, fn, static, args)
        _LOADED[key] = call
    return call(*args)


def _load_or_export(key: str, name: str, fn, static: tuple, args: tuple):
    import jax
    from jax import export

    path = _EXPORT_DIR / f"{name}-{key}.jaxexport"
    exp = None
    if path.is_file():
        try:
            exp = export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # damaged or foreign: trace again and replace it
            exp = None
    if exp is None:
        exp = export.export(jax.jit(lambda *a: fn(*static, *a)))(*args)
        try:
            blob = exp.serialize()
        except ImportError:  # jax's serializer needs the flatbuffers package: trace as usual
            return functools.partial(fn, *static)
        from cgnn_jax.io.atomic import atomic_write

        try:  # atomic: another process reads all of it or nothing
            _EXPORT_DIR.mkdir(parents=True, exist_ok=True)
            with atomic_write(path, "wb", fsync=False) as f:
                f.write(blob)
        except OSError:  # a read-only or full cache only costs tracing time
            pass
    return jax.jit(exp.call)
