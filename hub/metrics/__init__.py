"""The comparator: per-layer similarity of paired hidden states (see :mod:`hub.metrics.engine`)."""
from hub.metrics.engine import *  # noqa: F401,F403
from hub.metrics.engine import __all__  # noqa: F401
