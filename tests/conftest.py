"""Hypothesis profiles. ILSIM_HYPOTHESIS_PROFILE selects one:
    ci    (default) derandomized, bounded examples, no deadline: same cases on every run
    deep  randomized long sweeps for nightly or pre-release runs (10,000 examples per test)
    dev   quick local iteration
"""

import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", derandomize=True, max_examples=80, print_blob=True, **_common)
settings.register_profile("deep", max_examples=10_000, print_blob=True, **_common)
settings.register_profile("dev", max_examples=20, **_common)
settings.load_profile(os.environ.get("ILSIM_HYPOTHESIS_PROFILE", "ci"))
