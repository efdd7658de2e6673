"""Offline soft labels: the teachers' top-k outputs at every masked position, computed once.

``balkd-cache-teachers`` runs every language's teacher over the training data with exactly the
masks the student will see, and ``--task balanced_distill --teacher-cache DIR`` reads them back
instead of loading and running teachers. This module is the layout and the reader; building is in
:mod:`balkd_fairseq.soft_labels.cache_build`. A sample's address (split, epoch, language, sample id)
comes from the task (``task.sample_address``), and what decides the masks from
``task.data_fingerprint``. Layout::

    DIR/manifest.json                        what the cache was built for (checked when it is opened)
    DIR/<split>/epoch<E>/<lang>.index.npy    int64 [samples, 2]: first row and row count of each sample
    DIR/<split>/epoch<E>/<lang>.ids.npy      int32 [rows, K]: the teacher's top-k tokens, most likely first
    DIR/<split>/epoch<E>/<lang>.probs.npy    float16 [rows, K]: their probabilities (full softmax, T = 1)

A sample's rows are its masked positions, left to right. Files are memory-mapped when read, so a
training process holds only the pages its batches touch, and at most :data:`MAX_OPEN_SHARDS`
shards are open at once. Soft labels at temperature T over the top-k follow from the stored
probabilities: softmax(log p / T), exactly as online ``--topk K``.
"""
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from ..errors import BalkdError
from ..files import read_json
from ..hash_memo import memoized_sha256
from . import SoftLabelSource
from .fallback import check_cache_choice, own_teacher_sha256
from .positions import MaskedPositions, ranges
from .targets import SoftTargets, cached_soft_targets
from .teacher_loading import check_coverage, parse_teacher_spec

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PARTIAL_SUFFIX = ".partial"  # ROOT.partial: a cache being built
LANGUAGES_DIR = ".languages"  # in ROOT.partial: one record per finished language
SHARD_FILES = {"index": np.int64, "ids": np.int32, "probs": np.float16}
MAX_OPEN_SHARDS = 32  # (split, epoch, language) shards memory-mapped at once: 3 open files each
SCAN_ROWS = 1 << 18  # rows read at a time when validating ids
SECTION_NAMES = {"languages": "languages", "data": "data", "masking": "masking settings",
                 "balancing": "balancing settings", "seed": "seed"}


def first_difference(cached, current, path: str = "") -> Optional[Tuple[str, object, object]]:
    """(dotted path, cached value, current value) of the first leaf that differs, or None."""
    if isinstance(cached, dict) and isinstance(current, dict):
        for key in sorted(set(cached) | set(current)):
            found = first_difference(cached.get(key, "absent"), current.get(key, "absent"), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    return None if cached == current else (path, cached, current)


def staging_directory(root: str) -> str:
    """Where a cache is built until it is complete: ``ROOT.partial`` beside it."""
    return root.rstrip(os.sep) + PARTIAL_SUFFIX


def shard_directory(root: str, split: str, epoch: int) -> str:
    return os.path.join(root, split, f"epoch{epoch}")


# ---------------------------------------------------------------------------------- reading
class TeacherCache(SoftLabelSource):
    """An opened cache directory, checked against the task it is used with."""

    def __init__(self, root: str, manifest: dict, sample_address, max_open_shards: int = MAX_OPEN_SHARDS,
                 vocab_size: int = 0):
        self.root = root
        self.vocab_size = vocab_size  # the student's: what a flat tail (--topk-tail uniform) spreads over
        self.manifest_data = manifest
        self.k = int(manifest["topk"])
        self.languages: List[str] = list(manifest["fingerprint"]["languages"])
        self.epochs: Dict[str, List[int]] = {split: list(map(int, e)) for split, e in manifest["splits"].items()}
        self.sample_address = sample_address  # sample -> SampleAddress (the task's)
        self.max_open_shards = max_open_shards
        self._shards: OrderedDict[tuple, tuple] = OrderedDict()

    # -------------------------------------------------------------- opening and checks
    @classmethod
    def open(cls, root: str, task, check_teachers: bool = True) -> "TeacherCache":
        cache = cls(root, read_manifest(root, list(task.languages)), task.sample_address,
                    vocab_size=len(task.source_dictionary))
        cache.check_task(task)
        cache.validate_files(len(task.source_dictionary))
        if check_teachers and getattr(task.cfg, "teachers", ""):
            cache.check_teachers(task.cfg.teachers)
        if check_teachers and (getattr(task.cfg, "teachers", "") or getattr(task.cfg, "teacher_fallback", "")):
            check_cache_choice(root, cache.manifest(), task.cfg.teacher_fallback, task.cfg.teacher_fallback_rule)
        return cache

    def check_task(self, task) -> None:
        cached = self.manifest_data["fingerprint"]
        current = task.data_fingerprint(self.epochs)
        sections = [name for name in SECTION_NAMES if name in cached or name in current]
        sections += sorted((set(cached) | set(current)) - set(sections))
        for section in sections:
            found = first_difference(cached.get(section, "absent"), current.get(section, "absent"), section)
            if not found:
                continue
            path, old, new = found
            what = SECTION_NAMES.get(section, section)
            raise BalkdError(
                f"--teacher-cache {self.root} was built for other {what}: {path} is {old!r} in the cache "
                f"but {new!r} now; rebuild it with balkd-cache-teachers and the same flags as training"
            )

    def validate_files(self, vocab_size: int) -> None:
        """Every shard the manifest lists is there, complete and in range (a full scan of the ids)."""
        rows = self.manifest_data.get("rows", {})
        for split, epochs in self.epochs.items():
            for epoch in epochs:
                per_lang = rows.get(f"{split}/epoch{epoch}", {})
                missing = [lang for lang in self.languages if lang not in per_lang or not self._shard_exists(split, epoch, lang)]
                if missing:
                    raise BalkdError(
                        f"--teacher-cache {self.root} is incomplete: {split} epoch {epoch} has no shard for language(s) "
                        f"{', '.join(missing)}; finish or rebuild it with balkd-cache-teachers"
                    )
                for lang in self.languages:
                    self._validate_shard(split, epoch, lang, int(per_lang[lang]), vocab_size)

    def _shard_prefix(self, split: str, epoch: int, lang: str) -> str:
        return os.path.join(shard_directory(self.root, split, epoch), lang)

    def _shard_exists(self, split: str, epoch: int, lang: str) -> bool:
        prefix = self._shard_prefix(split, epoch, lang)
        return all(os.path.isfile(f"{prefix}.{name}.npy") for name in SHARD_FILES)

    def _validate_shard(self, split: str, epoch: int, lang: str, rows: int, vocab_size: int) -> None:
        prefix = self._shard_prefix(split, epoch, lang)
        index, ids, probs = self._load_shard(prefix)

        def bad(path, why):
            raise BalkdError(f"--teacher-cache {self.root}: {path} {why}; rebuild the cache with balkd-cache-teachers")

        expected_shape = {"index": (len(index), 2), "ids": (rows, self.k), "probs": (rows, self.k)}
        for name, array in zip(SHARD_FILES, (index, ids, probs)):
            path = f"{prefix}.{name}.npy"
            if array.dtype != SHARD_FILES[name]:
                bad(path, f"holds {array.dtype}, not {np.dtype(SHARD_FILES[name])}")
            if array.shape != expected_shape[name]:
                bad(path, f"has shape {array.shape}, the manifest says {expected_shape[name]}")
        starts, counts = index[:, 0], index[:, 1]
        if len(index) and (counts.min() < 0 or starts.min() < 0 or (starts + counts).max() > rows or counts.sum() != rows):
            bad(f"{prefix}.index.npy", f"does not index the {rows} rows of {prefix}.ids.npy")
        for start in range(0, rows, SCAN_ROWS):
            chunk = ids[start:start + SCAN_ROWS]
            if chunk.size and (chunk.min() < 0 or chunk.max() >= vocab_size):
                bad(f"{prefix}.ids.npy", f"holds token ids outside the vocabulary (0..{vocab_size - 1})")

    def _load_shard(self, prefix: str) -> tuple:
        arrays = []
        for name in SHARD_FILES:
            path = f"{prefix}.{name}.npy"
            try:
                arrays.append(np.load(path, mmap_mode="r"))
            except (OSError, ValueError) as err:  # missing, truncated or not an .npy file
                raise BalkdError(f"--teacher-cache {self.root}: cannot read {path}: {err}") from None
        return tuple(arrays)

    def check_teachers(self, spec: str) -> None:
        """The checkpoints named by ``--teachers`` must be (byte for byte) the ones the cache was built from."""
        mapping = parse_teacher_spec(spec)
        check_coverage(self.languages, mapping)
        cached = {t["language"]: t for t in self.manifest_data["teachers"]}
        for lang in self.languages:
            path = mapping[lang].checkpoint
            if not os.path.isfile(path):
                raise BalkdError(f"teacher for language {lang!r}: checkpoint not found: {path}")
            if memoized_sha256(path) != own_teacher_sha256(cached[lang]):
                raise BalkdError(
                    f"--teacher-cache {self.root} was built for another teacher of language {lang!r}: "
                    f"{cached[lang]['path']} (sha256 {cached[lang]['sha256'][:12]}…), not {path}; "
                    "rebuild the cache or drop --teachers"
                )

    def check_topk(self, topk: int) -> None:
        if topk > self.k:
            raise BalkdError(f"--topk {topk} exceeds the {self.k} tokens per position stored in --teacher-cache {self.root}")

    def manifest(self) -> List[dict]:
        """The teachers that produced the cache (same records as ``TeacherSet.manifest()``)."""
        return [dict(t) for t in self.manifest_data["teachers"]]

    # -------------------------------------------------------------- lookups
    def _shard(self, split: str, epoch: int, lang_id: int):
        key = (split, epoch, lang_id)
        if key in self._shards:
            self._shards.move_to_end(key)
            return self._shards[key]
        if split not in self.epochs:
            raise BalkdError(
                f"--teacher-cache {self.root} has no '{split}' split (it holds {', '.join(sorted(self.epochs))}); "
                f"rebuild it with {split!r} among --valid-subset"
            )
        if epoch not in self.epochs[split]:
            held = self.epochs[split]
            raise BalkdError(
                f"--teacher-cache {self.root} holds {split} epochs {min(held)}..{max(held)}; epoch {epoch} is not "
                f"cached: rebuild it with --max-epoch {epoch} or more (or train for fewer epochs)"
            )
        self._shards[key] = self._load_shard(self._shard_prefix(split, epoch, self.languages[lang_id]))
        while len(self._shards) > self.max_open_shards:
            self._shards.popitem(last=False)  # the memory maps close when their arrays are freed
        return self._shards[key]

    def lookup(self, address, masked: torch.Tensor):
        """Top-k ids (int64) and probabilities (float32) at the batch's masked positions, row-major.

        ``address`` is the batch's :class:`~balkd_fairseq.data.mask_origin.SampleAddress`. Returns
        ``(ids [M, K], probs [M, K], position_langs [M])`` on ``masked.device``.
        """
        split, epoch = address.split, address.epoch
        positions = MaskedPositions.of(masked, address.lang_ids, address.sample_ids)
        counts, samples = positions.counts, positions.extra[0]
        ids = np.empty((positions.total, self.k), dtype=np.int32)
        probs = np.empty((positions.total, self.k), dtype=np.float16)
        for lang_id, rows, target in positions.groups(with_masks_only=False):
            index, shard_ids, shard_probs = self._shard(split, epoch, lang_id)
            if samples[rows].max() >= len(index):
                raise BalkdError(
                    f"--teacher-cache {self.root}: {split} epoch {epoch} of {self.languages[lang_id]!r} has "
                    f"{len(index)} samples, the batch asks for sample {int(samples[rows].max())}: the cache is for other data"
                )
            starts, stored = index[samples[rows]].T
            if not np.array_equal(stored, counts[rows]):
                bad = int(rows[np.nonzero(stored != counts[rows])[0][0]])
                raise BalkdError(
                    f"--teacher-cache {self.root}: sample {int(samples[bad])} of {self.languages[lang_id]!r} ({split} "
                    f"epoch {epoch}) has {int(counts[bad])} masked positions but the cache has {int(index[samples[bad], 1])}: "
                    "the cache was built with other masks"
                )
            source = ranges(starts, counts[rows])
            ids[target] = shard_ids[source]
            probs[target] = shard_probs[source]
        device = masked.device
        return (torch.from_numpy(ids).to(device=device, dtype=torch.long, non_blocking=True),
                torch.from_numpy(probs).to(device=device, dtype=torch.float32, non_blocking=True), positions.position_langs)

    def soft_targets(self, sample: dict, masked: torch.Tensor, temperature: float = 1.0, topk: int = 0,
                     tail: bool = False) -> SoftTargets:
        ids, probs, position_langs = self.lookup(self.sample_address(sample), masked)
        if tail and not self.vocab_size:
            raise BalkdError(f"--teacher-cache {self.root}: the vocabulary size is needed for --topk-tail uniform")
        return cached_soft_targets(ids, probs, position_langs, len(self.languages), temperature, topk,
                                   self.vocab_size if tail else 0)


def read_manifest(root: str, languages: Optional[List[str]] = None) -> dict:
    """The manifest of a finished cache; an unfinished (sharded) build names the ``languages`` it lacks."""
    path = os.path.join(root, MANIFEST)
    if not os.path.isdir(root):
        if languages is not None and os.path.isdir(os.path.join(staging_directory(root), LANGUAGES_DIR)):
            refuse_unfinished(root, staging_directory(root), languages)
        raise BalkdError(f"--teacher-cache: directory not found: {root} (build it with balkd-cache-teachers)")
    if not os.path.isfile(path):
        if languages is not None and os.path.isdir(os.path.join(root, LANGUAGES_DIR)):
            refuse_unfinished(root, root, languages)
        raise BalkdError(f"--teacher-cache: {path} not found: {root} is not a finished teacher cache")
    manifest = read_json(path, "--teacher-cache")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise BalkdError(f"--teacher-cache: {path} is not a version-{FORMAT_VERSION} balkd teacher cache manifest")
    return manifest


def unfinished_languages(partial: str, languages: List[str]) -> List[str]:
    """The ``languages`` a build in ``partial`` has not recorded as finished (settings are checked at merge)."""
    return [lang for lang in languages if not os.path.isfile(os.path.join(partial, LANGUAGES_DIR, f"{lang}.json"))]


def refuse_unfinished(root: str, partial: str, languages: List[str]) -> None:
    missing = unfinished_languages(partial, languages)
    if not missing:
        raise BalkdError(f"--teacher-cache {root} is not merged yet: every language is cached in {partial} but its "
                         "manifest is not written; run balkd-cache-teachers with the same flags and --merge-only")
    named = ", ".join(missing[:20]) + (f" ... ({len(missing)} in all)" if len(missing) > 20 else "")
    raise BalkdError(f"--teacher-cache {root} is incomplete: language(s) {named} are not cached yet (unfinished build "
                     f"in {partial}); run the balkd-cache-teachers workers that own them (the last to finish merges)")
