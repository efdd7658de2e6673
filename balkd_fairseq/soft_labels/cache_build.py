"""Building a teacher cache (``balkd-cache-teachers``): every language's teacher run once over the
training data with the student's masks, written shard by shard into ``ROOT.partial`` and merged.

The layout and the reader are in :mod:`balkd_fairseq.soft_labels.cache`. A build may be split over
workers (``--shard``): each records its finished languages in ``ROOT.partial/.languages``, and the
last one to finish merges them into ``ROOT`` (``manifest.json`` written last).
"""

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import locks
from ..data.fingerprint import plain
from ..errors import BalkdError
from ..files import read_json
from ..outputs import check_replaceable, remove_quietly, write_json
from .build_settings import BUILD_SETTINGS, claim_or_check, teachers_settings
from .cache import (
    FORMAT_VERSION,
    LANGUAGES_DIR,
    MANIFEST,
    SHARD_FILES,
    TeacherCache,
    read_manifest,
    shard_directory,
    staging_directory,
)

logger = logging.getLogger(__name__)


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
        with self._named_on_failure():
            self._ids.write(np.ascontiguousarray(ids, dtype=np.int32).tobytes())
            self._probs.write(np.ascontiguousarray(probs, dtype=np.float16).tobytes())
        self.rows += int(counts.sum())

    def close(self) -> None:
        with self._named_on_failure():
            self._ids.close()
            self._probs.close()
        missing = np.nonzero(self.index[:, 0] < 0)[0]
        if missing.size:
            raise RuntimeError(f"{self.prefix}: samples {missing[:5].tolist()} were never written")
        with self._named_on_failure():
            with open(self.prefix + ".index.npy.tmp", "wb") as f:
                np.save(f, self.index)
            for name, dtype in (("ids", np.int32), ("probs", np.float16)):
                _raw_to_npy(f"{self.prefix}.{name}.raw", f"{self.prefix}.{name}.npy.tmp", dtype, self.rows, self.k)
        for name in SHARD_FILES:  # complete files only ever appear under their final names
            os.replace(f"{self.prefix}.{name}.npy.tmp", f"{self.prefix}.{name}.npy")

    @contextlib.contextmanager
    def _named_on_failure(self):
        """A raw write's OSError (a full disk) names no file: name the shard and the cache being built."""
        try:
            yield
        except OSError as err:
            raise BalkdError(f"could not write the teacher cache shard {self.prefix}.*: {err.strerror or err} "
                             "(the cache is built in a .partial folder; a rerun resumes it)") from err


def _raw_to_npy(raw: str, npy: str, dtype, rows: int, k: int) -> None:
    """The raw rows as an .npy file: its header, then the bytes as they are (C order). Plain writes, not a
    memory map: a full disk is then an OSError naming the shard, not a SIGBUS at page writeback."""
    dtype = np.dtype(dtype)
    if os.path.getsize(raw) != rows * k * dtype.itemsize:
        raise RuntimeError(f"{raw}: {os.path.getsize(raw)} bytes, expected {rows} rows of {k} x {dtype}")
    with open(npy, "wb") as out, open(raw, "rb") as src:
        np.lib.format.write_array_header_1_0(
            out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": (rows, k)})
        shutil.copyfileobj(src, out, 16 * 1024 * 1024)
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
    if build.merged:  # still checked: this worker's settings may not be the ones the cache was built with
        logger.info(f"{root} was merged by another worker while this one waited; nothing left to do")
        return already_merged(task, build.root, subsets, k, flag="--cache-dir")
    for lang in task.languages if languages is None else languages:
        if build.is_complete(lang):
            logger.info(f"{lang}: already cached in {build.partial}; skipped")
            continue
        with locks.held_lock(build.language_lock(lang), f"--cache-dir {root}: language {lang!r}"):
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
    if build.merged:  # by the last worker, while this waited for the merge lock
        return already_merged(task, root, subsets, k)
    manifest = build.merge()
    if manifest is None:
        missing = build.missing_languages()
        raise BalkdError(f"--merge-only: --cache-dir {root} is incomplete: language(s) {', '.join(missing)} are not "
                         f"cached yet in {partial}; run the workers that own them")
    return manifest


def already_merged(task, root: str, subsets: Dict[str, List[int]], k: int, flag: str = "--merge-only") -> dict:
    """The manifest of ``root`` when a worker of the build already merged it for these settings.

    A dependent ``--merge-only`` job then has nothing left to do (it succeeds); a cache of other settings
    is refused as training would refuse it, naming what differs."""
    cache = TeacherCache.open(root, task)
    manifest = cache.manifest_data
    if manifest.get("topk") != k or manifest.get("splits") != plan_splits(task, subsets):
        raise BalkdError(f"{flag}: --cache-dir {root} is a finished cache of other settings (top-{manifest.get('topk')}, "
                         f"splits {manifest.get('splits')}; now top-{k}, {plan_splits(task, subsets)}): pass --overwrite "
                         "to rebuild it")
    logger.info(f"{flag}: {root} is already merged (the last worker of the build did it); nothing to do")
    return manifest


def plan_splits(task, subsets: Dict[str, List[int]]) -> Dict[str, List[int]]:
    """{base split: epochs} the cache holds for ``subsets`` (``valid_de`` is a part of ``valid``)."""
    plan: Dict[str, set] = {}
    for subset, epochs in subsets.items():
        plan.setdefault(task.base_split(subset), set()).update(int(e) for e in epochs)
    return {split: sorted(epochs) for split, epochs in sorted(plan.items())}


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
        self.plan = plan_splits(task, subsets)
        self.settings = {"format": FORMAT_VERSION, "topk": k, "fingerprint": task.data_fingerprint(self.plan),
                         "teacher_dtype": plain(task.cfg.teacher_dtype), "splits": self.plan}
        self.records = {record["language"]: record for record in teachers.manifest()}
        os.makedirs(os.path.dirname(self.root), exist_ok=True)  # where the merge lock sits
        # a build this worker finds under way, or a ROOT that is not there yet, may be merged while it waits
        joining = os.path.isdir(self.partial) or not os.path.exists(self.root)
        with locks.held_lock(self.merge_lock(), f"--cache-dir {root}", wait=True):
            # ROOT.partial is (re)created only under the lock: a merge may have just moved it to ROOT
            self.merged = joining and not os.path.isdir(self.partial) and os.path.isdir(self.root)
            if not self.merged:  # before this worker removes or writes anything: other settings are refused
                os.makedirs(os.path.join(self.partial, LANGUAGES_DIR), exist_ok=True)
                claim_or_check(self.partial, {**self.settings, "teachers": teachers_settings(teachers.manifest())})

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

    def merge_lock(self) -> str:
        """Held while the build's settings are recorded or compared, and while it is merged."""
        parent, name = os.path.split(self.root.rstrip(os.sep))
        return os.path.join(parent, f".{name}.merge{locks.LOCK_NAME}")

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
        with locks.held_lock(self.merge_lock(), f"--cache-dir {self.given_root}", wait=True):
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
            remove_quietly(os.path.join(self.partial, BUILD_SETTINGS))  # absent in a build begun by an older version
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
