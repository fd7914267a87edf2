"""XLA_FLAGS for the `mgen` subprocesses that tests start with one CPU device (XLA_FLAGS replaced,
so without conftest.py's 8 forced devices): the fast-compile level conftest.py sets for the
tests' own processes, since those jobs too are bound by compile time, not run time."""
FAST_COMPILE = "--xla_backend_optimization_level=0"
