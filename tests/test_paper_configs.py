"""Every GPU config under examples/paper/config parses and names only options that exist."""
import argparse
from pathlib import Path

import pytest
from fairseq.criterions import CRITERION_DATACLASS_REGISTRY
from fairseq.dataclass.configs import FairseqConfig
from fairseq.models import ARCH_MODEL_REGISTRY, MODEL_DATACLASS_REGISTRY, MODEL_REGISTRY
from fairseq.optim import OPTIMIZER_DATACLASS_REGISTRY
from fairseq.optim.lr_scheduler import LR_SCHEDULER_DATACLASS_REGISTRY
from fairseq.tasks import TASK_DATACLASS_REGISTRY
from omegaconf import OmegaConf

import balkd_fairseq  # noqa: F401  (registers the plugin's task and criterion)

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "examples" / "paper" / "config").glob("*.yaml"))
NAMED_GROUPS = {
    "task": TASK_DATACLASS_REGISTRY,
    "criterion": CRITERION_DATACLASS_REGISTRY,
    "optimizer": OPTIMIZER_DATACLASS_REGISTRY,
    "lr_scheduler": LR_SCHEDULER_DATACLASS_REGISTRY,
}


def model_option_names(name):
    if name in MODEL_DATACLASS_REGISTRY:
        return set(MODEL_DATACLASS_REGISTRY[name].__dataclass_fields__)
    model_cls = MODEL_REGISTRY.get(name) or ARCH_MODEL_REGISTRY[name]
    parser = argparse.ArgumentParser()
    model_cls.add_args(parser)
    return {action.dest for action in parser._actions} | {"_name"}


def test_there_are_configs_for_teacher_and_three_students():
    assert {c.stem for c in CONFIGS} == {"teacher", "student_ours", "student_hl", "student_hl_balanced"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_names_only_existing_options(path):
    cfg = OmegaConf.load(path)
    top = set(FairseqConfig.__dataclass_fields__)
    assert set(cfg) <= top, f"unknown groups {set(cfg) - top}"
    for group, values in cfg.items():
        if group in NAMED_GROUPS:
            dataclass = NAMED_GROUPS[group][values["_name"]]
            unknown = set(values) - set(dataclass.__dataclass_fields__)
        elif group == "model":
            unknown = set(values) - model_option_names(values["_name"])
        else:
            unknown = set(values) - set(FairseqConfig.__dataclass_fields__[group].type.__dataclass_fields__)
        assert not unknown, f"{path.name}: {group} has unknown options {unknown}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_values_are_accepted_by_the_dataclasses(path):
    cfg = OmegaConf.load(path)
    for group in ("task", "criterion"):
        schema = OmegaConf.structured(NAMED_GROUPS[group][cfg[group]["_name"]])
        OmegaConf.merge(schema, cfg[group])  # raises on a wrong type or an unknown choice
