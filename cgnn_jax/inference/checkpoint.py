"""Orbax checkpoints that carry their config and a format version.

Layout: ``<workdir>/checkpoints/<step>/{state, meta}``. ``meta`` is JSON:
``{"format": "cgnn_jax", "version": FORMAT_VERSION, "kind": ..., "config": {...}, ...}``;
``state`` is the parameter pytree (or a whole train state when training). Restoring checks
``meta`` first, so an old or foreign checkpoint fails with a clear :class:`CheckpointError` before
any array is read.

Integrity: once orbax has finished a step, :func:`save_checkpoint` writes ``<step>/`` +
:data:`MANIFEST` (atomically, after the data): the size and sha256 of every file of the step.
Every restore (:func:`read_meta`, :func:`restore_checkpoint`, so every script and
``Pipeline.restore``) checks them first: a missing, truncated, extended or altered file is a
:class:`DamagedCheckpointError` naming the step folder and the file. A step without a manifest
(written before checkpoints had one, or cut off between its data and its manifest) is restored
unchecked, as before.

Versions: 2 keeps what training learned (the edge-filter threshold, the positive-edge weight) in
``meta["learned"]`` and leaves the config as it was given; 1 wrote them into the config. Version 1
checkpoints are still read (:func:`upgrade_meta` moves their learned values where version 2 keeps
them); any other version is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import orbax.checkpoint as ocp

FORMAT_NAME = "cgnn_jax"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated, of another version or not a cgnn_jax one."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file whose size or sha256 differs from the one its manifest recorded."""


MANIFEST = "cgnn_checksums.json"
"""The checksum manifest's file name inside a step folder (``<directory>/<step>/``)."""
MANIFEST_FORMAT = "cgnn_jax-checksums"
_HASH_BLOCK = 1 << 20


def _brief(e: BaseException, limit: int = 200) -> str:
    """An exception's text on one short line (orbax's and tensorstore's run to kilobytes)."""
    msg = " ".join((str(e).strip() or type(e).__name__).split())
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def _step_files(step_dir: Path) -> list[Path]:
    """The files of a step folder that its manifest covers: all but the manifest (and its
    temporary files)."""
    return sorted(
        f
        for f in step_dir.rglob("*")
        if f.is_file() and f.name != MANIFEST and not f.name.startswith(f".{MANIFEST}.")
    )


def write_manifest(step_dir: str | Path) -> Path:
    """Write ``step_dir/MANIFEST``: the size and sha256 of every other file of the step folder
    (atomically; call it once the step's data is complete)."""
    from cgnn_jax.io.atomic import atomic_write

    step_dir = Path(step_dir)
    files = {
        f.relative_to(step_dir).as_posix(): {"size": f.stat().st_size, "sha256": _file_sha256(f)}
        for f in _step_files(step_dir)
    }
    manifest = {"format": MANIFEST_FORMAT, "version": 1, "algorithm": "sha256", "files": files}
    path = step_dir / MANIFEST
    with atomic_write(path, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    return path


def verify_manifest(step_dir: str | Path) -> bool:
    """Check every file listed in ``step_dir``'s manifest; ``False`` if it has none.

    Raises:
      DamagedCheckpointError: a listed file is missing, or its size or sha256 differs; or the
        manifest itself is unreadable. The message names the step folder and the file.
    """
    step_dir = Path(step_dir)
    path = step_dir / MANIFEST
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return False
    except OSError as e:
        raise DamagedCheckpointError(f"{step_dir}: unreadable file {MANIFEST} ({_brief(e)})") from e
    try:
        manifest = json.loads(raw)
        files = manifest["files"]
        if manifest.get("format") != MANIFEST_FORMAT or not isinstance(files, dict):
            raise ValueError("not a cgnn_jax checksum manifest")
        entries = [(str(k), int(v["size"]), str(v["sha256"])) for k, v in files.items()]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise DamagedCheckpointError(f"{step_dir}: damaged file {MANIFEST} ({_brief(e)})") from e
    for rel, size, digest in entries:
        f = step_dir / rel
        try:
            actual = f.stat().st_size
        except OSError:
            raise DamagedCheckpointError(
                f"{step_dir}: damaged checkpoint, file {rel} is missing"
            ) from None
        if actual != size:
            how = "truncated" if actual < size else "extended"
            raise DamagedCheckpointError(
                f"{step_dir}: damaged checkpoint, file {rel} is {how} "
                f"({actual} bytes, saved with {size})"
            )
        try:
            ok = _file_sha256(f) == digest
        except OSError as e:
            raise DamagedCheckpointError(
                f"{step_dir}: damaged checkpoint, file {rel} is unreadable ({_brief(e)})"
            ) from e
        if not ok:
            raise DamagedCheckpointError(
                f"{step_dir}: damaged checkpoint, file {rel} differs from the saved one "
                "(sha256 mismatch)"
            )
    return True


def _manager(
    directory: Path, max_to_keep: int | None = 3, cleanup: bool = False
) -> ocp.CheckpointManager:
    """Orbax's manager of ``directory``; ``cleanup`` (writers only: a reader must never remove
    the folder a running save writes) removes the temporary folders of interrupted saves."""
    import orbax.checkpoint as ocp

    return ocp.CheckpointManager(
        directory.resolve(),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, cleanup_tmp_directories=cleanup
        ),
    )


def save_checkpoint(
    directory: str | Path,
    step: int,
    state: Any,
    *,
    kind: str,
    config: dict,
    extra: dict | None = None,
    max_to_keep: int | None = 3,
) -> Path:
    """Save ``state`` (a pytree of arrays) with its metadata as step ``step`` under ``directory``.

    Orbax writes into a temporary folder and renames it when complete, so an interrupted save
    leaves the previous checkpoint intact (and the next save removes its temporary folder).
    Then the step's checksum manifest is written (:func:`write_manifest`).
    """
    import orbax.checkpoint as ocp

    directory = Path(directory)
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "kind": kind,
        "config": config,
        "step": int(step),
        **(extra or {}),
    }
    with _manager(directory, max_to_keep, cleanup=True) as mgr:
        mgr.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        mgr.wait_until_finished()
    return write_manifest(directory / str(int(step))).parent


def latest_step(directory: str | Path) -> int | None:
    """The newest complete step under ``directory``, or ``None``."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    with _manager(directory, None) as mgr:
        return mgr.latest_step()


def read_meta(directory: str | Path, step: int | None = None) -> tuple[int, dict]:
    """``(step, meta)`` of a checkpoint, validated; raises :class:`CheckpointError`."""
    import orbax.checkpoint as ocp

    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: no such checkpoint directory")
    step = latest_step(directory) if step is None else step
    if step is None:
        raise CheckpointError(f"{directory}: holds no complete checkpoint")
    verify_manifest(directory / str(step))
    meta_dir = directory / str(step) / "meta"
    try:
        with _manager(directory, None) as mgr:
            meta = mgr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as e:  # orbax raises many types on damaged files
        raise CheckpointError(f"{meta_dir}: unreadable checkpoint metadata ({_brief(e)})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise CheckpointError(
            f"{meta_dir}: not a cgnn_jax checkpoint (format={meta.get('format')!r})"
            if isinstance(meta, dict)
            else f"{meta_dir}: not a cgnn_jax checkpoint"
        )
    version = meta.get("version")
    if type(version) is not int or version not in READABLE_VERSIONS:
        raise CheckpointError(
            f"{meta_dir}: checkpoint format version {version!r}, this cgnn_jax reads "
            f"versions {', '.join(map(str, READABLE_VERSIONS))}; retrain or use the matching "
            "cgnn_jax release"
        )
    return int(step), upgrade_meta(meta)


# Keys that version-1 code read with a default (``config.get(key, default)``), by block: a
# version-1 config that lacks one meant that default.
_V1_DEFAULTS = {
    "graph": {"approx": 0.0},
    "gnn": {
        "degree_norm": False,
        "skip_input": False,
        "residual": False,
        "input_graph": "refined",
        "true_pairs_per_hit": 1.0,
        "random_pairs_per_hit": 0.0,
        "clip_norm": 1.0,
        "graphs_per_device": 1,
    },
    "cluster": {  # version 1 merged the whole block onto these
        "split_hidden": [32, 32],
        "stop_hidden": [32, 32],
        "split_init_scale": 1.0,
        "prior_dims": 0,
        "prior_gain": 4.0,
        "prior_columns": [],
        "stop_aggregate": "mean",
        "inputs": "gnn+features",
        "max_depth": 40,
        "train_depth": 20,
        "sectors": [3, 6],
        "min_size": 3,
        "stop_threshold": 0.5,
        "stop_weight": 1.0,
        "hinge_weight": 1.0,
        "learning_rate": 3e-3,
        "e2e_learning_rate": 3e-4,
        "clip_norm": 1.0,
        "graphs_per_device": 1,
        "epochs": 20,
        "e2e_epochs": 10,
        "patience": 10,
        "val_events": 1,
        "val_loss": True,
        "iterative_rounds": 0,
        "iterative_cutoff": 0.5,
    },
}


def _fill_v1_defaults(config: object) -> object:
    if not isinstance(config, dict):
        return config
    config = dict(config)
    for block, defaults in _V1_DEFAULTS.items():
        if isinstance(config.get(block), dict):
            config[block] = {**defaults, **config[block]}
    return config


def upgrade_meta(meta: dict) -> dict:
    """``meta`` in the current version's layout: a version-1 meta gets ``learned`` from its
    stage-1 config (where version 1 wrote the learned edge-filter threshold), and its configs
    the values version-1 code assumed for keys they lack."""
    if meta["version"] == FORMAT_VERSION:
        return meta
    meta = dict(meta)
    for key in ("config", "stage1_config"):
        if key in meta:
            meta[key] = _fill_v1_defaults(meta[key])
    s1 = meta.get("stage1_config") or meta.get("config") or {}
    filt = s1.get("filter") if isinstance(s1, dict) else None
    if isinstance(filt, dict) and "threshold" in filt:
        meta["learned"] = {"filter_threshold": float(filt["threshold"])}
    meta["version"] = FORMAT_VERSION
    return meta


def restore_checkpoint(
    directory: str | Path,
    step: int | None = None,
    *,
    kind: str | None = None,
    target: Any = None,
) -> tuple[Any, dict]:
    """``(state, meta)`` of the checkpoint at ``step`` (default: latest) under ``directory``.

    Args:
      kind: if given, the checkpoint's ``meta["kind"]`` must match.
      target: an abstract or concrete pytree with the expected structure (optional); a mismatch
        raises :class:`CheckpointError`.
    """
    directory = Path(directory)
    cache = _restore_cache_file(directory, step) if target is None else None
    hit = _read_restore_cache(cache) if cache is not None else None
    if hit is not None:
        state, meta = hit
        step = int(meta.get("step", -1))
        # the cache is keyed by the files' names, sizes and times, not their bytes: a file
        # damaged in place (same size and time) is still caught here
        verify_manifest(directory / str(step))
    else:
        step, meta = read_meta(directory, step)
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(
            f"{directory / str(step)}: a {meta.get('kind')!r} checkpoint, expected {kind!r}"
        )
    if hit is not None:
        return state, meta
    import orbax.checkpoint as ocp

    try:
        with _manager(directory, None) as mgr:
            if target is None:
                # onto this process's first device, whatever the saving machine had (a model
                # trained on a CPU restores on a GPU and back)
                target = _local_target(directory, step)
            arg = ocp.args.StandardRestore(target)
            state = mgr.restore(step, args=ocp.args.Composite(state=arg))["state"]
    except Exception as e:
        raise CheckpointError(
            f"{directory / str(step) / 'state'}: cannot restore ({_brief(e)})"
        ) from e
    if cache is not None:
        _write_restore_cache(cache, state, {**meta, "step": int(step)})
        # the state as later runs will read it: orbax's arrays are committed to a device, the
        # cache's are not, and jitted programs compile (and are cached) differently for each;
        # so the first run fills the compilation cache with what the later runs look up
        again = _read_restore_cache(cache)
        if again is not None:
            state = again[0]
    return state, meta


# ------------------------------------------------------------------ restore cache
# A launch script restores the same model on every run; orbax takes ~1 s for that (and ~0.4 s to
# import). With the launch scripts' cache on (:mod:`cgnn_jax.inference.jax_cache`), a restored state
# is also kept as one ``.npz`` (arrays) + JSON (tree and meta), keyed by the checkpoint folder's
# path and the names, sizes and modification times of all its files: any new or rewritten
# checkpoint misses the cache and goes through orbax (and its checks) again.


def _restore_cache_file(directory: Path, step: int | None) -> Path | None:
    from cgnn_jax.inference.jax_cache import cache_subdir

    folder = cache_subdir("restored")
    if folder is None or not directory.is_dir():
        return None
    h = hashlib.sha256(repr((FORMAT_VERSION, str(directory.resolve()), step)).encode())
    try:
        for f in sorted(directory.rglob("*")):
            st = f.stat()
            h.update(repr((str(f.relative_to(directory)), st.st_size, st.st_mtime_ns)).encode())
    except OSError:
        return None
    return folder / f"{h.hexdigest()[:32]}.npz"


def _flatten(tree: Any, leaves: list) -> Any:
    if isinstance(tree, Mapping):
        return {"d": {str(k): _flatten(v, leaves) for k, v in tree.items()}}
    if isinstance(tree, (list, tuple)):
        return {"l": [_flatten(v, leaves) for v in tree]}
    leaves.append(np.asarray(tree))
    return {"a": len(leaves) - 1}


def _unflatten(skel: dict, arrays: Any) -> Any:
    if "d" in skel:
        return {k: _unflatten(v, arrays) for k, v in skel["d"].items()}
    if "l" in skel:
        return [_unflatten(v, arrays) for v in skel["l"]]
    import jax

    return jax.device_put(arrays[f"a{skel['a']}"])


def _read_restore_cache(path: Path) -> tuple[Any, dict] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            head = json.loads(bytes(z["head"]).decode())
            return _unflatten(head["tree"], z), head["meta"]
    except Exception:  # absent, damaged or foreign: restore through orbax
        return None


def _write_restore_cache(path: Path, state: Any, meta: dict) -> None:
    from cgnn_jax.io.atomic import atomic_write

    leaves: list = []
    try:
        head = json.dumps({"tree": _flatten(state, leaves), "meta": meta})
        if any(a.dtype == object for a in leaves):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, "wb", fsync=False) as f:
            np.savez(
                f,
                head=np.frombuffer(head.encode(), np.uint8),
                **{f"a{i}": a for i, a in enumerate(leaves)},
            )
    except (OSError, TypeError, ValueError):  # a read-only cache or an unusual state: skip
        pass


def _local_target(directory: Path, step: int) -> Any:
    """The checkpoint's tree (nested dicts / lists) as abstract arrays on this process's first
    local device, read from the array metadata alone."""
    import orbax.checkpoint as ocp

    log = logging.getLogger("absl")
    level = log.level
    log.setLevel(logging.ERROR)  # orbax warns about a metadata file older checkpoints lack
    try:
        meta = ocp.StandardCheckpointer().metadata((directory / str(step) / "state").resolve())
    finally:
        log.setLevel(level)
    import jax

    dev = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def conv(m: Any) -> Any:
        if hasattr(m, "shape") and hasattr(m, "dtype"):
            return jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=dev)
        if isinstance(m, Mapping):
            return {k: conv(v) for k, v in m.items()}
        if isinstance(m, (list, tuple)):
            return type(m)(conv(v) for v in m)
        return m

    tree = getattr(meta, "item_metadata", meta)
    return conv(getattr(tree, "tree", tree))
