"""Benchmark: the survey simulator's throughput (no peer: nothing else simulates this).

- ``sim_catalog_100x9``: the catalog-level mode at the scale the foundation issue
  names, 100 visits x 9 detectors with ~2000 stars in the field (Cramér–Rao errors from
  GalSim-drawn PSFs per detector and wavelength node);
- ``sim_render_small``: the ``small`` preset rendered (6 visits x 9 detectors of 512²
  in g and r, stars and bulge+disk galaxies through the chromatic PSF).

Run with ``python benchmarks/run.py --only sim``.
"""

from __future__ import annotations

from typing import Any


def _catalog(_data: Any) -> Any:
    import lsstdrp.sim as sim

    s = sim.make_survey("small", rng=1, render=False, n_visits=100, star_density_arcmin2=45.0,
                        galaxy_density_arcmin2=0.0)
    return s.all_catalogs()


def _render(_data: Any) -> Any:
    import lsstdrp.sim as sim

    return sim.make_survey("small", rng=1)


def benchmarks() -> list[dict[str, Any]]:
    """The simulator benchmarks (lsstdrp only; ``peer`` is None)."""
    return [
        {"name": "sim_catalog_100x9", "setup": lambda: None, "lsstdrp": _catalog, "peer": None,
         "peer_name": None, "repeats": 1},
        {"name": "sim_render_small", "setup": lambda: None, "lsstdrp": _render, "peer": None,
         "peer_name": None, "repeats": 1},
    ]
