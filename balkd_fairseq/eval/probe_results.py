"""balkd-probe's result files, and adding one run's tasks to an earlier run's.

``OUT/<name>/probe.json`` holds one block per task; ``probe_items.npz`` beside it the per-sentence
counts (arrays named ``<task>/<train>/<test>/<field>``). A run of some tasks keeps the other tasks'
blocks and arrays of an earlier run, provided both probed the same checkpoint (by content) with the
same dictionary, layer, word pooling, probe and training settings; otherwise it refuses, naming the setting.
Both files are written atomically (items first, so probe.json never names items that are missing).
"""
import hashlib
import logging
import os
from typing import Dict, List, NamedTuple, Optional

import numpy as np

from ..errors import BalkdError
from .item_scores import PROBE_ITEMS, read_items, write_items
from .results_io import PROBING_RESULTS, read_json, write_json

logger = logging.getLogger(__name__)

TASK_ORDER = ("pos", "ner")
# What must agree between a run and the results it is added to.
SETTINGS = ("checkpoint_sha256", "dictionary_sha256", "layer", "word_pooling", "probe", "training", "random_init",
            "train_sentences", "epoch_size")
# what an epoch of probe training draws: one pass over the probe's own training words, or (few-shot
# probes) as many words as the whole train split holds, so they get a whole-split probe's updates
OWN_WORDS_EPOCHS, WHOLE_SPLIT_EPOCHS = "train split", "whole train split"
# settings older results do not hold, with the value they had then
RECORDED_LATER = {"random_init": None, "train_sentences": None, "epoch_size": OWN_WORDS_EPOCHS, "word_pooling": "first"}


class EarlierResults(NamedTuple):
    """The other tasks' JSON blocks and per-item arrays of an earlier run, which a run keeps."""

    tasks: Dict[str, dict]
    items: Dict[str, np.ndarray]


def load_mergeable(out_dir: str, header: dict, tasks: List[str]) -> Optional[EarlierResults]:
    """What this run keeps of the earlier results in ``out_dir`` (None: nothing to keep).

    Raises when they hold other tasks probed with different settings, or when probe.json there is
    not a balkd-probe result; read before any probe is trained, so a refusal costs nothing.
    """
    path = os.path.join(out_dir, PROBING_RESULTS)
    if not os.path.exists(path):
        return None
    earlier = read_json(path)
    if earlier.get("kind") != "probing" or not isinstance(earlier.get("tasks"), dict):
        raise BalkdError(f"{path} exists and is not a balkd-probe result; refusing to replace it (use another --output-dir)")
    kept = [task for task in earlier["tasks"] if task not in tasks]
    if not kept:
        logger.info(f"{path}: replacing the earlier results of {', '.join(earlier['tasks']) or 'no task'}")
        return None
    differences = _differences(earlier, header)
    if differences:
        raise BalkdError(
            f"{path} holds {', '.join(kept)} results of other settings ({'; '.join(differences)}); "
            "refusing to mix them in one file: use another --output-dir or checkpoint NAME"
        )
    logger.info(f"{path}: keeping the earlier {', '.join(kept)} results")
    items = _kept_items(os.path.join(out_dir, PROBE_ITEMS), kept)
    return EarlierResults({task: earlier["tasks"][task] for task in kept}, items)


def _differences(earlier: dict, header: dict) -> List[str]:
    keys = list(SETTINGS) if "checkpoint_sha256" in earlier else ["checkpoint", *SETTINGS]
    found = []
    for key in keys:
        there = earlier.get(key, RECORDED_LATER.get(key, header[key]))
        if there == header[key]:
            continue
        if isinstance(header[key], dict) and isinstance(there, dict):
            found += [
                f"{key}.{sub}: {_show(there.get(sub))} there, {_show(header[key].get(sub))} now"
                for sub in sorted(set(there) | set(header[key]))
                if there.get(sub) != header[key].get(sub)
            ]
        else:
            found.append(f"{key}: {_show(there)} there, {_show(header[key])} now")
    return found


def _show(value) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:12]  # a sha256: the prefix is enough to tell them apart
    return repr(value)


def combined_data_sha256(tasks: Dict[str, dict]) -> str:
    """One hash over the tasks' data hashes (each covers that task's files and the dictionary)."""
    lines = "".join(f"{task}\t{block.get('data_sha256')}\n" for task, block in sorted(tasks.items()))
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()


def write(
    out_dir: str, header: dict, blocks: Dict[str, dict], items: Dict[str, np.ndarray], earlier: Optional[EarlierResults]
) -> dict:
    """Write probe.json and probe_items.npz (with ``earlier``'s other tasks); returns the JSON payload."""
    tasks = {**(earlier.tasks if earlier else {}), **blocks}
    tasks = {task: tasks[task] for task in sorted(tasks, key=_task_rank)}
    all_items = {**(earlier.items if earlier else {}), **items}
    languages = list(dict.fromkeys(lang for block in tasks.values() for lang in block["languages"]))
    payload = {**header, "languages": languages, "data_sha256": combined_data_sha256(tasks), "tasks": tasks}
    write_items(os.path.join(out_dir, PROBE_ITEMS), all_items)
    write_json(os.path.join(out_dir, PROBING_RESULTS), payload)
    return payload


def _task_rank(task: str):
    return (TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


def _kept_items(path: str, kept_tasks: List[str]) -> Dict[str, np.ndarray]:
    if not os.path.exists(path):
        logger.warning(f"{path} is missing: the earlier {', '.join(kept_tasks)} results keep no per-item scores")
        return {}
    return {key: value for key, value in read_items(path).items() if key.split("/", 1)[0] in kept_tasks}
