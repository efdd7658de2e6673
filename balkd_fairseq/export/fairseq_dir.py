"""``OUT/fairseq``: the model as stock fairseq loads it, without this plugin and without the training data.

``model.pt`` holds the weights and a config made only of plain Python values (dicts, lists, strings,
numbers): torch >= 2.6 loads that under ``weights_only=True`` with no allowlist, and fairseq's
``load_checkpoint_to_cpu`` turns it back into an OmegaConf config. The task becomes fairseq's own
``masked_lm`` (same masking and block settings; its data is this folder, which holds ``dict.txt``),
the criterion ``masked_lm``. Optimizer state, teacher paths and the plugin's ``--user-dir`` are dropped.

A model trained with ``--encoder-layers-to-keep`` holds only the kept layers, renumbered 0..N-1; fairseq
would prune them again at load (and miss layers), so the config says N layers and keeps no list.
"""
import argparse
import dataclasses
import shutil
from pathlib import Path

import torch
from fairseq.tasks.masked_lm import MaskedLMConfig
from omegaconf import OmegaConf

from .source import DICT_FILE, SPM_FILE, ExportSource

MODEL_FILE = "model.pt"
MASKED_LM_FIELDS = {f.name for f in dataclasses.fields(MaskedLMConfig)}


def plain(value):
    """``value`` as nested dicts/lists of str, int, float, bool and None (what ``weights_only`` loads)."""
    if isinstance(value, argparse.Namespace):
        value = vars(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def masked_lm_task(task_cfg: dict) -> dict:
    """The checkpoint's task settings that fairseq's ``masked_lm`` knows, reading its data from '.'."""
    task = {k: v for k, v in task_cfg.items() if k in MASKED_LM_FIELDS}
    task.update(_name="masked_lm", data=".")
    return task


def model_settings(model_cfg: dict, task_cfg: dict, criterion_cfg: dict) -> dict:
    """A legacy (argparse) model config as a named dict; other components' settings removed.

    fairseq keeps the whole command line in ``cfg.model`` of argparse-style models (RoBERTa): that
    includes teacher paths and the plugin directory, which are dropped here.
    """
    foreign = (set(task_cfg) - MASKED_LM_FIELDS) | (set(criterion_cfg) - {"_name"})
    model = {k: v for k, v in model_cfg.items() if k not in foreign}
    if "arch" in model:
        model["_name"] = model["arch"]
    model.update(task="masked_lm", criterion="masked_lm", data=".", user_dir=None)
    return model


def without_layer_pruning(model: dict, layers: int) -> dict:
    """The model settings of the weights as saved: ``layers`` layers, none to prune (see the module doc)."""
    model = {k: v for k, v in model.items() if k != "encoder_layers_to_keep"}
    model["encoder_layers"] = layers
    return model


def inference_config(cfg, layers: int) -> dict:
    container = plain(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    task_cfg, criterion_cfg = container.get("task") or {}, container.get("criterion") or {}
    container["model"] = without_layer_pruning(model_settings(container["model"], task_cfg, criterion_cfg), layers)
    container["task"] = masked_lm_task(task_cfg)
    container["criterion"] = {"_name": "masked_lm", "tpu": bool((container.get("common") or {}).get("tpu", False))}
    if container.get("common"):
        container["common"]["user_dir"] = None
    return container


def inference_state(source: ExportSource) -> dict:
    history = source.state.get("optimizer_history") or [{}]
    return {
        "args": None,
        "cfg": inference_config(source.cfg, source.layers),
        "model": source.weights,
        # fairseq's checkpoint upgrade expects these two; nothing to resume from is kept
        "optimizer_history": [{"criterion_name": "MaskedLmLoss", "optimizer_name": "none",
                               "lr_scheduler_state": {}, "num_updates": int(history[-1].get("num_updates", 0))}],
        "extra_state": {"train_iterator": {"epoch": 1, "iterations_in_epoch": 0}},
    }


def write_fairseq_dir(source: ExportSource, out: Path) -> None:
    out.mkdir()
    torch.save(inference_state(source), out / MODEL_FILE)
    shutil.copyfile(source.dict_file, out / DICT_FILE)
    shutil.copyfile(source.spm_file, out / SPM_FILE)
