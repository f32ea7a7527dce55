"""Hypothesis profiles for the fuzz tests (tests/test_fuzz.py).

``ci`` (the default): a fixed, bounded set of examples, the same on every run, written
nowhere. ``long``: many fresh random examples for a local hunt, e.g.
``python -m pytest tests/test_fuzz.py --hypothesis-profile=long``
(``FASTGD_FUZZ_EXAMPLES`` sets its example count).
"""

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile("ci", max_examples=2000, derandomize=True, database=None, deadline=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
settings.register_profile("long", max_examples=int(os.environ.get("FASTGD_FUZZ_EXAMPLES", "50000")), deadline=None,
                          database=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile("ci")
