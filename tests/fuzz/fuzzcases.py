"""The fuzz suite's settings (`@FUZZ` on each property) and the count of cases run in this process, by target
(summed over xdist workers by conftest.py)."""
import collections
import os

from hypothesis import HealthCheck, settings

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
         HealthCheck.function_scoped_fixture]
settings.register_profile("cnnkit-test", max_examples=25, deadline=None, derandomize=True,
                          suppress_health_check=_SLOW, print_blob=True)
settings.register_profile("cnnkit-fuzz", max_examples=int(os.environ.get("CNNKIT_FUZZ_EXAMPLES", "1000")),
                          deadline=None, suppress_health_check=_SLOW, print_blob=True)
PROFILE = "cnnkit-fuzz" if os.environ.get("CNNKIT_FUZZ") else "cnnkit-test"
FUZZ = settings.get_profile(PROFILE)  # the suite's tests only: hypothesis' global profile stays as it is

CASES: collections.Counter = collections.Counter()


def case(target: str) -> None:
    """Count one example of `target` (called at the top of each property)."""
    CASES[target] += 1
