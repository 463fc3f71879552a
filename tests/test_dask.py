"""lsstdrp functions are pure and picklable: mapping them over exposures with
dask.distributed on a local cluster gives exactly the serial result (DESIGN.md §4)."""

import numpy as np
import pytest

import lsstdrp.sim as sim

distributed = pytest.importorskip("distributed")


def _render_image(survey, key):
    exp, _truth = sim.render_exposure(survey, *key)
    return exp.image


def test_render_over_a_local_cluster_matches_serial():
    survey = sim.make_survey("tiny", rng=9, render=False)
    keys = survey.keys()[:4]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        fut = client.scatter(survey, broadcast=True)
        images = client.gather(client.map(_render_image, [fut] * len(keys), keys))
    for key, img in zip(keys, images):
        np.testing.assert_array_equal(img, _render_image(survey, key))
