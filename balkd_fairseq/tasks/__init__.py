from . import balanced_distill  # noqa: F401
