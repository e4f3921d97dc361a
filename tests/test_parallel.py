"""`make test` spreads the suite over the cores with pytest-xdist's `--dist loadgroup`: the tests of one
`xdist_group` (the Ray tests, which must not start two Ray instances at once; the benchmark and resume modules,
which share a costly module fixture) must run on one worker. A pytest/pytest-xdist pair that drops the grouping
silently would run them at once, or build the fixture twice; this test fails then."""
import os

import pytest


@pytest.mark.xdist_group("grouping-check")
def test_loadgroup_keeps_an_xdist_group_on_one_worker(request):
    if not os.environ.get("PYTEST_XDIST_WORKER") or not request.config.getoption("loadgroup", False):
        pytest.skip("checks `--dist loadgroup` (make test); this run is not distributed that way")
    # pytest-xdist sends a test to the worker of its group by a suffix of its node id
    assert request.node.nodeid.endswith("@grouping-check"), request.node.nodeid
