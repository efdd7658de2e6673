"""``--teacher-fallback``: a second model (typically the HL-balanced student) that serves the languages whose
own teacher is worse on validation data.

The choice is made once, at start-up, before any soft label is produced: every candidate scores the
masked-LM loss (mean negative log-likelihood of the gold tokens) on each language's validation split,
masked by the evaluation machinery (:mod:`balkd_fairseq.eval.masked_lm_eval`: fixed seed, every chosen
position ``<mask>``), so the teacher and the fallback are scored on the same masks and the choice is
deterministic. Rule ``valid-loss``: a language is served by the fallback when its own teacher's loss is
higher (a tie keeps the teacher). At most two models are held while choosing (the fallback and one
teacher), whatever ``--max-resident-teachers`` says afterwards.

The choice is recorded per language in the teacher manifest (``served_by`` and both candidates' losses
in ``fallback``), hence in the student's checkpoints and in a teacher cache's manifest.json.
"""
import logging
import math
import os
from typing import Dict, List

import torch

from ..errors import BalkdError
from ..eval.masked_lm_eval import MaskingConfig, masked_dataset, score_dataset, split_prefix
from ..files import file_sha256
from .teacher_loading import FALLBACK_TEACHER, TeacherSpec, check_and_build_teacher

logger = logging.getLogger(__name__)

FALLBACK_RULES = ["valid-loss"]
FALLBACK_WHAT = "--teacher-fallback"


def validation_loss(model, task, lang: str, subset: str) -> float:
    """Mean masked-LM loss (nats) of ``model`` on ``lang``'s ``subset`` split, on the evaluation masks."""
    cfg = task.cfg
    masking = MaskingConfig(seed=int(cfg.seed), mask_prob=float(cfg.mask_prob), tokens_per_sample=int(cfg.tokens_per_sample),
                            sample_break_mode=str(cfg.sample_break_mode))
    dataset = masked_dataset(split_prefix(task.data_root, lang, subset), task.source_dictionary, masking)
    device = "cuda" if torch.cuda.is_available() and not getattr(cfg, "cpu", False) else "cpu"
    summary = score_dataset(model.to(device), dataset, task.source_dictionary, max_tokens=16 * masking.tokens_per_sample,
                            device=device)
    if summary["n_masked"] == 0:
        raise BalkdError(f"{FALLBACK_WHAT}: the {subset} split of language {lang!r} has no masked position to score "
                         "the teachers on; give it more validation text or drop --teacher-fallback")
    return math.log(summary["mlm_ppl"])


def choose_teachers(task, mapping: Dict[str, object], languages: List[str]) -> Dict[str, dict]:
    """``{lang: {"served_by": "teacher"|"fallback", "fallback": {...}}}`` by the task's fallback rule.

    ``mapping`` holds each language's own :class:`~balkd_fairseq.soft_labels.teacher_loading.TeacherSpec`.
    """
    rule, subset = str(task.cfg.teacher_fallback_rule), str(task.cfg.teacher_fallback_subset)  # (plain str for JSON)
    if rule not in FALLBACK_RULES:
        raise BalkdError(f"--teacher-fallback-rule must be one of {', '.join(FALLBACK_RULES)}, got {rule!r}")
    fallback_spec = TeacherSpec(task.cfg.teacher_fallback)
    fallback_model, fallback_record = check_and_build_teacher(task, FALLBACK_TEACHER, fallback_spec)
    fallback_sha = fallback_record.sha256
    fallback_losses = {lang: validation_loss(fallback_model, task, lang, subset) for lang in languages}
    del fallback_model
    choices = {}
    for lang in languages:
        teacher, record = check_and_build_teacher(task, lang, mapping[lang])
        teacher_loss = validation_loss(teacher, task, lang, subset)
        del teacher
        served_by = "fallback" if teacher_loss > fallback_losses[lang] else "teacher"
        choices[lang] = {"served_by": served_by, "fallback": {
            "rule": rule, "subset": subset,
            "teacher": {"path": record.path, "sha256": record.sha256, "valid_loss": teacher_loss},
            "fallback": {"path": os.path.abspath(fallback_spec.checkpoint), "sha256": fallback_sha,
                         "valid_loss": fallback_losses[lang]},
        }}
        logger.info(f"{FALLBACK_WHAT}: {lang}: own teacher {subset} loss {teacher_loss:.4f}, fallback "
                    f"{fallback_losses[lang]:.4f} -> served by the {served_by}")
    used = [lang for lang in languages if choices[lang]["served_by"] == "fallback"]
    logger.info(f"{FALLBACK_WHAT}: {len(used)} of {len(languages)} language(s) served by the fallback "
                f"{fallback_spec.checkpoint}{': ' + ','.join(used) if used else ''}")
    return choices


def own_teacher_sha256(record: dict) -> str:
    """The sha256 of a language's own teacher (``--teachers``), also when the fallback served it."""
    return record["fallback"]["teacher"]["sha256"] if record.get("fallback") else record["sha256"]


def check_cache_choice(root: str, records: List[dict], fallback_path: str, rule: str) -> None:
    """A cache serves the student's fallback choice: built with the same ``--teacher-fallback`` (or both without)."""
    rule = str(rule)
    chosen = [r for r in records if r.get("fallback")]
    if not fallback_path:
        if chosen:
            raise BalkdError(f"--teacher-cache {root} was built with --teacher-fallback "
                             f"{chosen[0]['fallback']['fallback']['path']}: pass the same --teacher-fallback, or rebuild it")
        return
    sha = file_sha256(fallback_path) if os.path.isfile(fallback_path) else None
    for record in records:
        info = record.get("fallback")
        if not info:
            raise BalkdError(f"--teacher-cache {root} was built without --teacher-fallback (language "
                             f"{record['language']!r}); rebuild it with --teacher-fallback {fallback_path}")
        if info["fallback"]["sha256"] != sha or info["rule"] != rule:
            raise BalkdError(f"--teacher-cache {root} was built with another fallback for language {record['language']!r}: "
                             f"{info['fallback']['path']} (rule {info['rule']}), not {fallback_path} (rule {rule}); "
                             "rebuild the cache")
