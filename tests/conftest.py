"""Hypothesis profiles for the fuzz tests (tests/test_fuzz.py).

``ci`` (the default): a fixed, bounded set of examples, the same on every run, written
nowhere (2,000; 500 when FASTGD_BACKEND forces a backend). ``long``: many fresh random
examples for a local hunt, e.g. ``python -m pytest tests/test_fuzz.py --hypothesis-profile=long``
(``FASTGD_FUZZ_EXAMPLES`` sets its example count).
"""

import os

import pytest
from hypothesis import HealthCheck, settings

from fastgd._backends import BACKENDS

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

# The runs with a backend forced (.ci/run) fuzz a quarter as many examples each as the README's run.
_FORCED = os.environ.get("FASTGD_BACKEND", "auto") != "auto"
settings.register_profile("ci", max_examples=500 if _FORCED else 2000, derandomize=True, database=None, deadline=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("long", max_examples=int(os.environ.get("FASTGD_FUZZ_EXAMPLES", "50000")), deadline=None,
                          database=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile("ci")


# --- tests that FASTGD_BACKEND cannot change --------------------------------------------------
# .ci/run runs the suite once as README says, then again with each backend forced
# (FASTGD_BACKEND=numba / numpy), deselecting the tests marked ``pinned_backend``: those give
# the same result whatever the variable says, so the forced runs would only repeat them.
# A test parametrized by the engine it runs on (an argument ``backend`` or ``engine`` set to a
# backend's name) is marked here; every such test passes that engine to each of its fits and
# kernel calls, or fits nothing. Test modules that call no estimator with "auto" mark
# themselves (``pytestmark``). Parameters set to None or "auto" stay unmarked.
_ENGINE_ARGUMENTS = ("backend", "engine")


def pytest_collection_modifyitems(config, items):
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if any(isinstance(params.get(arg), str) and params[arg] in BACKENDS for arg in _ENGINE_ARGUMENTS):
            item.add_marker(pytest.mark.pinned_backend)
