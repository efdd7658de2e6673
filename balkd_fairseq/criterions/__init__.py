from . import multi_teacher_distill  # noqa: F401
