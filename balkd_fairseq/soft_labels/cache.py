"""Offline soft labels: the teachers' top-k outputs at every masked position, computed once.

``balkd-cache-teachers`` runs every language's teacher over the training data with exactly the
masks the student will see, and ``--task balanced_distill --teacher-cache DIR`` reads them back
instead of loading and running teachers. A sample's address (split, epoch, language, sample id)
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
import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import locks
from ..data.fingerprint import plain
from ..errors import BalkdError
from ..files import read_json
from ..hash_memo import memoized_sha256
from ..outputs import check_replaceable, remove_quietly, write_json
from . import SoftLabelSource
from .fallback import check_cache_choice, own_teacher_sha256
from .online import check_coverage, parse_teacher_spec
from .positions import MaskedPositions, ranges
from .targets import SoftTargets, cached_soft_targets

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


# ---------------------------------------------------------------------------------- writing
def topk_probabilities(logits: torch.Tensor, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """The top-k tokens (int32) and their full-softmax probabilities (float16) of each row of logits."""
    logp_top, ids = F.log_softmax(logits.float(), dim=-1).topk(k, dim=-1)
    return ids.to(torch.int32).cpu().numpy(), logp_top.exp().to(torch.float16).cpu().numpy()


class ShardWriter:
    """One (split, epoch, language) shard: rows appended in any sample order, then turned into .npy files."""

    def __init__(self, directory: str, lang: str, num_samples: int, k: int):
        self.prefix = os.path.join(directory, lang)
        self.k = k
        self.index = np.full((num_samples, 2), -1, dtype=np.int64)
        self.rows = 0
        self._ids = open(self.prefix + ".ids.raw", "wb")
        self._probs = open(self.prefix + ".probs.raw", "wb")

    def add(self, sample_ids: np.ndarray, counts: np.ndarray, ids: np.ndarray, probs: np.ndarray) -> None:
        """Rows of a batch (row-major over its samples); ``counts[i]`` rows belong to ``sample_ids[i]``."""
        starts = self.rows + np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.index[sample_ids, 0] = starts
        self.index[sample_ids, 1] = counts
        self._ids.write(np.ascontiguousarray(ids, dtype=np.int32).tobytes())
        self._probs.write(np.ascontiguousarray(probs, dtype=np.float16).tobytes())
        self.rows += int(counts.sum())

    def close(self) -> None:
        self._ids.close()
        self._probs.close()
        missing = np.nonzero(self.index[:, 0] < 0)[0]
        if missing.size:
            raise RuntimeError(f"{self.prefix}: samples {missing[:5].tolist()} were never written")
        with open(self.prefix + ".index.npy.tmp", "wb") as f:
            np.save(f, self.index)
        for name, dtype in (("ids", np.int32), ("probs", np.float16)):
            _raw_to_npy(f"{self.prefix}.{name}.raw", f"{self.prefix}.{name}.npy.tmp", dtype, self.rows, self.k)
        for name in SHARD_FILES:  # complete files only ever appear under their final names
            os.replace(f"{self.prefix}.{name}.npy.tmp", f"{self.prefix}.{name}.npy")


def _raw_to_npy(raw: str, npy: str, dtype, rows: int, k: int, chunk_rows: int = 1 << 16) -> None:
    out = np.lib.format.open_memmap(npy, mode="w+", dtype=dtype, shape=(rows, k))
    if rows:
        src = np.memmap(raw, dtype=dtype, mode="r", shape=(rows, k))
        for start in range(0, rows, chunk_rows):
            out[start:start + chunk_rows] = src[start:start + chunk_rows]
        del src
    out.flush()
    del out
    os.remove(raw)


def build_cache(task, teachers, root: str, subsets: Dict[str, List[int]], k: int, batch_size: Optional[int],
                max_tokens: Optional[int], device: torch.device, overwrite: bool = False, progress: bool = True,
                languages: Optional[List[str]] = None) -> Optional[dict]:
    """Run ``teachers`` over ``subsets`` ({subset: epochs}, e.g. train 1..E and valid 1); write ``root``.

    Subsets of one base split (``valid``, ``valid_de``) share its shards. The cache is written to
    ``root.partial`` and renamed when complete, so an interrupted build never leaves something that
    looks like a finished cache; an existing ``root`` is replaced only with ``overwrite``.

    ``languages`` (default: all) are the ones this worker computes: a worker of a sharded build
    writes only those into the shared ``root.partial``, each language under temporary names and
    recorded as complete when all its shards are in place, so a rerun skips finished languages and
    redoes a killed one. Whichever worker finds every language complete merges: it verifies the
    shards, writes the manifest and renames the directory. Returns the manifest, or None while
    other workers' languages are missing.
    """
    build = CacheBuild(task, teachers, root, subsets, k, overwrite)
    for lang in task.languages if languages is None else languages:
        if build.is_complete(lang):
            logger.info(f"{lang}: already cached in {build.partial}; skipped")
            continue
        with held_lock(build.language_lock(lang), f"--cache-dir {root}: language {lang!r}"):
            build.cache_language(lang, batch_size, max_tokens, device, progress)
    return build.merge()


def merge_cache(task, teachers, root: str, subsets: Dict[str, List[int]], k: int, overwrite: bool = False) -> dict:
    """Only the final step of a sharded build: verify every language, write the manifest, move into place."""
    partial = staging_directory(os.path.realpath(root))
    if not os.path.isdir(partial) and os.path.isdir(root) and not overwrite:
        return already_merged(task, root, subsets, k)
    if not os.path.isdir(partial) and not (os.path.exists(root) and not overwrite):
        raise BalkdError(f"--merge-only: nothing to merge: {partial} not found (no unfinished build of --cache-dir {root})")
    build = CacheBuild(task, teachers, root, subsets, k, overwrite)
    manifest = build.merge()
    if manifest is None:
        missing = build.missing_languages()
        raise BalkdError(f"--merge-only: --cache-dir {root} is incomplete: language(s) {', '.join(missing)} are not "
                         f"cached yet in {partial}; run the workers that own them")
    return manifest


def already_merged(task, root: str, subsets: Dict[str, List[int]], k: int) -> dict:
    """The manifest of ``root`` when a worker of the build already merged it for these settings.

    A dependent ``--merge-only`` job then has nothing left to do (it succeeds); a cache of other settings
    is refused as training would refuse it, naming what differs."""
    cache = TeacherCache.open(root, task)
    manifest = cache.manifest_data
    if manifest.get("topk") != k or manifest.get("splits") != plan_splits(task, subsets):
        raise BalkdError(f"--merge-only: --cache-dir {root} is a finished cache of other settings (top-{manifest.get('topk')}, "
                         f"splits {manifest.get('splits')}; now top-{k}, {plan_splits(task, subsets)}): pass --overwrite "
                         "to rebuild it")
    logger.info(f"--merge-only: {root} is already merged (the last worker of the build did it); nothing to do")
    return manifest


def plan_splits(task, subsets: Dict[str, List[int]]) -> Dict[str, List[int]]:
    """{base split: epochs} the cache holds for ``subsets`` (``valid_de`` is a part of ``valid``)."""
    plan: Dict[str, set] = {}
    for subset, epochs in subsets.items():
        plan.setdefault(task.base_split(subset), set()).update(int(e) for e in epochs)
    return {split: sorted(epochs) for split, epochs in sorted(plan.items())}


@contextlib.contextmanager
def held_lock(path: str, what: str, wait: bool = False):
    locks.acquire(path, what, wait=wait)
    try:
        yield
    finally:
        locks.release(path)


class CacheBuild:
    """A cache being built in ``ROOT.partial``, by one worker or many (each its own languages).

    ``ROOT.partial/.languages/<lang>.json`` records a finished language: its rows per shard and a
    signature of everything that decides them (data, masks, balancing, seed, top-k, the teacher's
    content), so a record left by a build with other settings or another teacher does not count.
    """

    def __init__(self, task, teachers, root: str, subsets: Dict[str, List[int]], k: int, overwrite: bool = False):
        if os.path.exists(root) and not overwrite:
            raise BalkdError(f"--cache-dir {root} already exists; pass --overwrite to replace it")
        inputs = [task.cfg.data, *(record.get("path") for record in teachers.manifest())]
        check_replaceable(root, inputs, "--cache-dir", marker=MANIFEST)  # never delete the data or a teacher
        self.task, self.teachers, self.subsets, self.k, self.overwrite = task, teachers, subsets, k, overwrite
        self.given_root = root
        self.root = os.path.realpath(root)  # a symlinked --cache-dir: write the directory it points to
        vocab = len(task.source_dictionary)
        if not 0 < k <= vocab:
            raise BalkdError(f"--cache-topk must be in 1..{vocab} (the vocabulary size), got {k}")
        self.partial = staging_directory(self.root)
        os.makedirs(os.path.join(self.partial, LANGUAGES_DIR), exist_ok=True)
        self.plan = plan_splits(task, subsets)
        self.settings = {"format": FORMAT_VERSION, "topk": k, "fingerprint": task.data_fingerprint(self.plan),
                         "teacher_dtype": plain(task.cfg.teacher_dtype), "splits": self.plan}
        self.records = {record["language"]: record for record in teachers.manifest()}

    # -------------------------------------------------------------- per language
    def signature(self, lang: str) -> str:
        teacher = {name: self.records[lang][name] for name in ("sha256", "dictionary_sha256")}
        text = json.dumps({**self.settings, "language": lang, "teacher": teacher}, sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def record_path(self, lang: str) -> str:
        return os.path.join(self.partial, LANGUAGES_DIR, f"{lang}.json")

    def language_lock(self, lang: str) -> str:
        parent, name = os.path.split(self.root.rstrip(os.sep))
        return os.path.join(parent, f".{name}.language-{lang}{locks.LOCK_NAME}")  # never the merge lock

    def language_record(self, lang: str) -> Optional[dict]:
        """The record of a finished ``lang`` built with this build's settings, or None."""
        path = self.record_path(lang)
        if not os.path.isfile(path):
            return None
        try:
            record = read_json(path, "--cache-dir")
        except BalkdError:  # a damaged record: the language is redone
            return None
        return record if isinstance(record, dict) and record.get("signature") == self.signature(lang) else None

    def is_complete(self, lang: str) -> bool:
        return self.language_record(lang) is not None

    def cache_language(self, lang: str, batch_size, max_tokens, device, progress: bool) -> None:
        remove_quietly(self.record_path(lang))
        for leftover in glob.glob(os.path.join(glob.escape(self.partial), "*", "epoch*", f"{glob.escape(lang)}.*")):
            os.remove(leftover)  # what a killed worker left of this language
        rows: Dict[str, int] = {}
        for subset, epochs in self.subsets.items():
            for epoch in epochs:
                for split, _, count in _cache_subset(self.task, self.teachers, self.partial, subset, epoch, self.k,
                                                     batch_size, max_tokens, device, progress, rows, lang):
                    rows[f"{split}/epoch{epoch}"] = count
        write_json(self.record_path(lang), {"language": lang, "signature": self.signature(lang), "rows": rows}, indent=1)

    # -------------------------------------------------------------- the final step
    def missing_languages(self) -> List[str]:
        return [lang for lang in self.task.languages if not self.is_complete(lang)]

    def merge(self) -> Optional[dict]:
        """Verify every language, write the manifest and move the cache into place; None if languages are missing."""
        parent, name = os.path.split(self.root.rstrip(os.sep))
        with held_lock(os.path.join(parent, f".{name}.merge{locks.LOCK_NAME}"), f"--cache-dir {self.given_root}", wait=True):
            if not os.path.isdir(self.partial):  # another worker merged it while this one waited
                return read_manifest(self.root)
            records = {}
            for lang in self.task.languages:
                records[lang] = self.language_record(lang)
                if records[lang] is None:
                    return None
            manifest = self._manifest(records)
            TeacherCache(self.partial, manifest, self.task.sample_address).validate_files(len(self.task.source_dictionary))
            with open(os.path.join(self.partial, MANIFEST), "w", encoding="utf-8") as f:
                json.dump(manifest, f, indent=1)
            shutil.rmtree(os.path.join(self.partial, LANGUAGES_DIR))
            if os.path.exists(self.root):
                shutil.rmtree(self.root)
            os.rename(self.partial, self.root)
            return manifest

    def _manifest(self, records: Dict[str, dict]) -> dict:
        rows: Dict[str, Dict[str, int]] = {}
        for split, epochs in self.plan.items():
            for epoch in epochs:
                key = f"{split}/epoch{epoch}"
                for lang in self.task.languages:
                    if key in records[lang]["rows"]:
                        rows.setdefault(key, {})[lang] = int(records[lang]["rows"][key])
        splits = {split: epochs for split, epochs in self.plan.items()
                  if any(f"{split}/epoch{e}" in rows for e in epochs)}
        return {
            "format": FORMAT_VERSION,
            "topk": self.k,
            "fingerprint": self.task.data_fingerprint(splits),
            "teachers": self.teachers.manifest(),
            "teacher_dtype": plain(self.task.cfg.teacher_dtype),
            "splits": splits,
            "rows": rows,
        }


def staging_directory(root: str) -> str:
    """Where a cache is built until it is complete: ``ROOT.partial`` beside it."""
    return root.rstrip(os.sep) + PARTIAL_SUFFIX


def _cache_subset(task, teachers, root, subset, epoch, k, batch_size, max_tokens, device, progress, done,
                  only: str) -> Iterable:
    """Write language ``only``'s shard of one subset and epoch unless in ``done`` ({"split/epochE": rows});
    yields (base split, language, rows)."""
    from fairseq.data import data_utils
    from tqdm import tqdm

    pad = task.source_dictionary.pad()
    for lang_id, part in task.language_datasets(subset, epoch):
        lang = task.languages[lang_id]
        if lang != only:
            continue
        split = task.sample_address(part.collater([part[0]])).split
        if f"{split}/epoch{epoch}" in done:
            continue
        directory = shard_directory(root, split, epoch)
        os.makedirs(directory, exist_ok=True)
        sizes = np.asarray(part.sizes, dtype=np.int64).reshape(-1, len(part)).max(0)
        order = np.argsort(sizes, kind="stable")
        batches = data_utils.batch_by_size(order, part.num_tokens, num_tokens_vec=sizes[order], max_tokens=max_tokens,
                                           max_sentences=batch_size or (None if max_tokens else 32))
        writer = ShardWriter(directory, lang, len(part), k)
        for batch in tqdm(batches, desc=f"{split} epoch {epoch} {lang}", unit="batch", disable=not progress, leave=False):
            sample = part.collater([part[int(i)] for i in batch])
            address = task.sample_address(sample)
            src = sample["net_input"]["src_tokens"].to(device)
            masked = sample["target"].to(device).ne(pad)
            counts = masked.sum(1).cpu().numpy()
            if not counts.any():
                writer.add(address.sample_ids.numpy(), counts, np.empty((0, k)), np.empty((0, k)))
                continue
            logits, _ = teachers.masked_logits(src, masked, address.lang_ids.to(device))
            top_ids, top_probs = topk_probabilities(logits, k)
            writer.add(address.sample_ids.numpy(), counts, top_ids, top_probs)
        writer.close()
        yield split, lang, writer.rows
