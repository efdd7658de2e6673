from . import multi_teacher_distill  # noqa: F401
from . import token_probing  # noqa: F401
