from . import balanced_distill  # noqa: F401
from . import token_probing  # noqa: F401
