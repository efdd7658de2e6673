"""Session fixtures: tiny two-language data and two tiny monolingual teachers, built once."""
import pytest
from helpers import make_tiny_data, train_tiny_teacher


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """aa is high-resource (200 sentences), bb low-resource (40); one shared dictionary."""
    return make_tiny_data(tmp_path_factory.mktemp("data"), {"aa": 200, "bb": 40})


@pytest.fixture(scope="session")
def tiny_teachers(tiny_data, tmp_path_factory):
    """{lang: checkpoint path} of teachers trained with stock masked_lm on DATA/<lang>."""
    root = tmp_path_factory.mktemp("teachers")
    return {lang: train_tiny_teacher(tiny_data, lang, root / lang, seed=i + 1) for i, lang in enumerate(["aa", "bb"])}


@pytest.fixture(scope="session")
def teacher_spec(tiny_teachers):
    return ",".join(f"{lang}:{path}" for lang, path in tiny_teachers.items())
