"""The shipped real TrackML event (``cgnn_jax/data/real``) reads like any event."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cgnn_jax.data import REAL_SAMPLE_DIR, real_sample
from cgnn_jax.io import list_event_ids, read_event

ROOT = Path(__file__).resolve().parents[1]


def test_real_sample_reads_as_an_event():
    assert list_event_ids(REAL_SAMPLE_DIR) == [2]
    ev = real_sample()
    same = read_event(REAL_SAMPLE_DIR / "event000000002-hits.csv.gz")
    assert ev.event_id == 2 and ev.n_hits == 2851 == same.n_hits
    pid = ev.truth.particle_id.to_numpy()
    assert (pid == 0).sum() == 390
    assert len(np.unique(pid[pid != 0])) == 245
    assert set(ev.hits.volume_id.unique()) <= {7, 8, 9, 12, 13, 14, 16, 17, 18}
    assert 0.02 < ev.truth.weight.sum() < 0.03  # the original weights of a 5 %-track sample
    assert ev.cells.hit_id.isin(ev.hits.hit_id).all()
    # A long luminous region: the collisions' vertices spread along the beam by ~50 mm.
    p = ev.particles
    prompt = np.hypot(p.vx, p.vy) < 1.0
    assert 40.0 < p.vz[prompt].std() < 60.0


def test_real_sample_is_package_data_with_its_citation():
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    package_data = lines[lines.index("[tool.setuptools.package-data]") + 1]
    assert package_data.startswith("cgnn_jax = [") and '"data/real/*"' in package_data
    readme = (REAL_SAMPLE_DIR / "README.md").read_text()
    assert "CC BY 3.0" in readme and "Amrouche" in readme and "gnn_tracking" in readme
