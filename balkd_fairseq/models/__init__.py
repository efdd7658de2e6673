from . import probes  # noqa: F401
