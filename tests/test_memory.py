"""The launch scripts' allocator setting (cgnn_jax.utils.memory)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, resource
from cgnn_jax.utils.memory import keep_freed_memory
on = keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def faults_of_one_buffer(n=64 * 2**20):  # 64 MB, above glibc's largest mmap threshold
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)  # touch every page, as XLA's temporaries are
    libc.free(p)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults_of_one_buffer()
print(int(on), faults_of_one_buffer())
"""


def probe(env_value: str | None) -> tuple[bool, int]:
    env = {k: v for k, v in os.environ.items() if k != "CGNN_JAX_MALLOC"}
    if env_value is not None:
        env["CGNN_JAX_MALLOC"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_freed_buffer_is_reused_without_new_page_faults():
    on, faults = probe(None)
    assert on
    # a second 64 MB buffer (16384 pages of 4 KB) comes from the kept heap, already faulted in
    assert faults < 1000, faults


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_system_setting_leaves_the_allocator_alone():
    on, faults = probe("system")
    assert not on
    assert faults > 4000, faults  # glibc's default: the buffer is mapped and faulted in again


GUARDED = r"""
import ctypes, resource, sys
sys.path.append("launch")
import _cli
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def faults(n=64 * 2**20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    libc.free(p)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
def main(argv):
    faults()
    print(faults())
_cli.guarded(main, uses_jax=False, keep_memory=False)([])
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
@pytest.mark.parametrize("value, kept", [(None, False), ("keep", True)])
def test_train_scripts_opt_in_with_keep(value, kept):
    """``train.py`` runs with ``keep_memory=False``; ``CGNN_JAX_MALLOC=keep`` turns it on."""
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "CGNN_JAX_MALLOC"}
    if value is not None:
        env["CGNN_JAX_MALLOC"] = value
    out = subprocess.run(
        [sys.executable, "-c", GUARDED],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert (int(out[-1]) < 1000) == kept, out
