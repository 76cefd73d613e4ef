"""The launch scripts' on-disk caches: traced programs (jax.export) and restored checkpoints."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cgnn_jax.inference import jax_cache
from cgnn_jax.inference.checkpoint import CheckpointError, restore_checkpoint, save_checkpoint


@pytest.fixture
def cache_on(tmp_path):
    jax_cache.enable_export_cache(tmp_path / "exports")
    yield tmp_path
    jax_cache.enable_export_cache(None)


TRACES: list[int] = []


def _make_affine():
    """A new jitted function each call (as in a new process: no in-memory trace to reuse)."""

    @functools.partial(jax.jit, static_argnums=0)
    def affine(scale, params, x):
        TRACES.append(1)  # runs only while tracing
        return {"y": scale * x @ params["w"] + params["b"], "n": jnp.sum(x > 0)}

    return affine


def _want(scale, params, x):
    return scale * x @ params["w"] + params["b"]


def _args(rows):
    rng = np.random.default_rng(rows)
    params = {"w": rng.normal(size=(3, 2)).astype(np.float32), "b": np.ones(2, np.float32)}
    return params, rng.normal(size=(rows, 3)).astype(np.float32)


def test_traced_programs_are_kept_and_reused(cache_on):
    params, x = _args(5)
    TRACES.clear()
    got = jax_cache.cached_call("affine", _make_affine(), (2.0,), (params, x))
    np.testing.assert_allclose(got["y"], _want(2.0, params, x), rtol=1e-5, atol=1e-5)
    assert int(got["n"]) == int(np.sum(x > 0))
    files = sorted((cache_on / "exports").glob("affine-*.jaxexport"))
    assert len(files) == 1 and TRACES == [1]

    jax_cache.enable_export_cache(cache_on / "exports")  # as a new process: nothing in memory
    TRACES.clear()
    again = jax_cache.cached_call("affine", _make_affine(), (2.0,), (params, x))
    assert TRACES == []  # loaded, not traced
    np.testing.assert_array_equal(again["y"], got["y"])

    # another static value or another shape is another program
    jax_cache.cached_call("affine", _make_affine(), (3.0,), (params, x))
    jax_cache.cached_call("affine", _make_affine(), (2.0,), _args(7))
    assert len(list((cache_on / "exports").glob("affine-*.jaxexport"))) == 3
    assert not list((cache_on / "exports").glob("*.tmp"))  # written atomically


def test_a_damaged_program_is_traced_again(cache_on):
    params, x = _args(4)
    jax_cache.cached_call("affine", _make_affine(), (1.0,), (params, x))
    (path,) = (cache_on / "exports").glob("affine-*.jaxexport")
    path.write_bytes(b"not a program")
    jax_cache.enable_export_cache(cache_on / "exports")
    TRACES.clear()
    got = jax_cache.cached_call("affine", _make_affine(), (1.0,), (params, x))
    assert TRACES == [1]
    np.testing.assert_allclose(got["y"], _want(1.0, params, x), rtol=1e-5, atol=1e-5)
    assert path.read_bytes() != b"not a program"  # replaced


def test_cache_off_calls_the_function(tmp_path):
    jax_cache.enable_export_cache(None)
    params, x = _args(3)
    TRACES.clear()
    got = jax_cache.cached_call("affine", _make_affine(), (1.0,), (params, x))
    assert TRACES == [1]
    np.testing.assert_allclose(got["y"], _want(1.0, params, x), rtol=1e-5, atol=1e-5)
    assert jax_cache.cache_subdir("restored") is None


STATE = {"enc": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "layers": [np.ones(2)]}


def test_restored_checkpoints_are_kept_and_checked(cache_on, tmp_path):
    d = tmp_path / "ck"
    save_checkpoint(d, 4, STATE, kind="toy", config={"h": 2})
    first, _ = restore_checkpoint(d, kind="toy")  # through orbax; keeps a copy
    assert len(list((cache_on / "restored").glob("*.npz"))) == 1
    second, meta2 = restore_checkpoint(d, kind="toy")  # from the copy
    assert meta2["config"] == {"h": 2} and meta2["kind"] == "toy" and meta2["step"] == 4
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert np.asarray(a).dtype == np.asarray(b).dtype
    assert jax.tree.structure(first) == jax.tree.structure(second)
    # the first restore hands out the state as later ones read it (uncommitted arrays), so a
    # jitted program compiles once for both: the first run fills the compilation cache with
    # the entries a user's second run looks up (orbax's committed arrays compiled apart)
    total = jax.jit(lambda t: sum(jnp.sum(x) for x in jax.tree.leaves(t)))
    np.testing.assert_allclose(float(total(first)), float(total(second)), rtol=1e-6)
    assert total._cache_size() == 1
    with pytest.raises(CheckpointError, match="expected 'other'"):
        restore_checkpoint(d, kind="other")  # the kind is checked on a cached copy too

    # a new checkpoint in the folder misses the copy: the latest step is restored
    save_checkpoint(d, 5, {**STATE, "layers": [np.zeros(2)]}, kind="toy", config={"h": 2})
    newer, meta5 = restore_checkpoint(d, kind="toy")
    assert meta5["step"] == 5
    np.testing.assert_array_equal(np.asarray(newer["layers"][0]), np.zeros(2))

    # a damaged copy is ignored
    for f in (cache_on / "restored").glob("*.npz"):
        f.write_bytes(b"garbage")
    again, _ = restore_checkpoint(d, kind="toy")
    np.testing.assert_array_equal(np.asarray(again["layers"][0]), np.zeros(2))
