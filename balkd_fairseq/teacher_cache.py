"""Offline teacher cache: the teachers' top-k soft labels at every masked position, computed once.

``balkd-cache-teachers`` runs every language's teacher over the training data with exactly the
masks the student will see, and ``--criterion multi_teacher_distill --teacher-cache DIR`` reads
them back instead of loading and running teachers. Masks are a pure function of (seed, epoch,
index within a language's part of the epoch), so that triple plus the language is a sample's
address. Layout::

    DIR/manifest.json                        what the cache was built for (checked when it is opened)
    DIR/<split>/epoch<E>/<lang>.index.npy    int64 [samples, 2]: first row and row count of each sample
    DIR/<split>/epoch<E>/<lang>.ids.npy      int32 [rows, K]: the teacher's top-k tokens, most likely first
    DIR/<split>/epoch<E>/<lang>.probs.npy    float16 [rows, K]: their probabilities (full softmax, T = 1)

A sample's rows are its masked positions, left to right. Files are memory-mapped when read, so a
training process holds only the pages its batches touch. Soft labels at temperature T over the
top-k follow from the stored probabilities: softmax(log p / T), exactly as online ``--topk K``.
"""
import hashlib
import json
import os
import shutil
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import BalkdError
from .files import read_json
from .outputs import check_replaceable
from .teachers import check_coverage, file_sha256, parse_teacher_spec

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MASKING_FIELDS = (
    "tokens_per_sample", "sample_break_mode", "mask_prob", "leave_unmasked_prob", "random_token_prob",
    "freq_weighted_replacement", "mask_whole_words", "mask_multiple_length", "mask_stdev", "skip_masking",
    "shorten_method", "shorten_data_split_list",
)
BALANCING_FIELDS = ("balance", "balance_draw", "sampling_alpha", "samples_per_language")
BIN_SAMPLE_BYTES = 1 << 20  # of DATA/<lang>/<split>.bin: the first, middle and last MiB are hashed


# ---------------------------------------------------------------------------------- fingerprints
def _plain(value):
    """Config values as JSON scalars (enums and omegaconf nodes to str, ints stay ints)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _sampled_sha256(path: str) -> str:
    """sha256 of a large file's size and its first, middle and last MiB (cheap for corpora of any size)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for start in sorted({0, max(0, size // 2 - BIN_SAMPLE_BYTES // 2), max(0, size - BIN_SAMPLE_BYTES)}):
            f.seek(start)
            digest.update(f.read(BIN_SAMPLE_BYTES))
    return digest.hexdigest()


def data_fingerprint(task, splits: Iterable[str]) -> dict:
    """dict.txt hash and, per language and split, the .idx hash and the .bin size and sampled hash."""
    root = task._data_root(task.cfg)
    files = {}
    for lang in task.languages:
        for split in sorted(splits):
            prefix = os.path.join(root, lang, split)
            if not os.path.isfile(prefix + ".idx") or not os.path.isfile(prefix + ".bin"):
                files[f"{lang}/{split}"] = "missing"
                continue
            files[f"{lang}/{split}"] = {
                "idx_sha256": file_sha256(prefix + ".idx"),
                "bin_bytes": os.path.getsize(prefix + ".bin"),
                "bin_sampled_sha256": _sampled_sha256(prefix + ".bin"),
            }
    return {"dict_sha256": file_sha256(os.path.join(root, "dict.txt")), "files": files}


def task_fingerprint(task, splits: Iterable[str]) -> dict:
    """Everything that decides which tokens are masked where, for the given base splits."""
    cfg = task.cfg
    return {
        "languages": list(task.languages),
        "data": data_fingerprint(task, splits),
        "masking": {name: _plain(getattr(cfg, name, None)) for name in MASKING_FIELDS},
        "balancing": {name: _plain(getattr(cfg, name, None)) for name in BALANCING_FIELDS},
        "seed": int(cfg.seed),
    }


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
        np.save(self.prefix + ".index.npy", self.index)
        for name, dtype in (("ids", np.int32), ("probs", np.float16)):
            _raw_to_npy(f"{self.prefix}.{name}.raw", f"{self.prefix}.{name}.npy", dtype, self.rows, self.k)


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


def shard_directory(root: str, split: str, epoch: int) -> str:
    return os.path.join(root, split, f"epoch{epoch}")


def language_parts(dataset) -> list:
    """The per-language datasets of a split (the task wraps their ConcatDataset in a sort order)."""
    while not hasattr(dataset, "datasets"):
        dataset = dataset.dataset
    return list(dataset.datasets)


# ---------------------------------------------------------------------------------- reading
def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + c) for every (s, c), without a Python loop."""
    ends = np.cumsum(counts)
    return np.repeat(starts - (ends - counts), counts) + np.arange(int(ends[-1]) if len(ends) else 0)


class TeacherCache:
    """An opened cache directory, checked against the task it is used with."""

    def __init__(self, root: str, manifest: dict):
        self.root = root
        self.manifest_data = manifest
        self.k = int(manifest["topk"])
        self.languages: List[str] = list(manifest["fingerprint"]["languages"])
        self.epochs: Dict[str, List[int]] = {split: list(map(int, e)) for split, e in manifest["splits"].items()}
        self._shards = {}

    # -------------------------------------------------------------- opening and checks
    @classmethod
    def open(cls, root: str, task, check_teachers: bool = True) -> "TeacherCache":
        cache = cls(root, read_manifest(root))
        cache.check_task(task)
        if check_teachers and getattr(task.cfg, "teachers", ""):
            cache.check_teachers(task.cfg.teachers)
        return cache

    def check_task(self, task) -> None:
        cached = self.manifest_data["fingerprint"]
        current = task_fingerprint(task, self.epochs)
        for section, what in SECTION_NAMES.items():
            found = first_difference(cached[section], current[section], section)
            if found:
                path, old, new = found
                raise BalkdError(
                    f"--teacher-cache {self.root} was built for other {what}: {path} is {old!r} in the cache "
                    f"but {new!r} now; rebuild it with balkd-cache-teachers and the same flags as training"
                )

    def check_teachers(self, spec: str) -> None:
        """The checkpoints named by ``--teachers`` must be (byte for byte) the ones the cache was built from."""
        mapping = parse_teacher_spec(spec)
        check_coverage(self.languages, mapping)
        cached = {t["language"]: t for t in self.manifest_data["teachers"]}
        for lang in self.languages:
            path = mapping[lang]
            if not os.path.isfile(path):
                raise BalkdError(f"teacher for language {lang!r}: checkpoint not found: {path}")
            if file_sha256(path) != cached[lang]["sha256"]:
                raise BalkdError(
                    f"--teacher-cache {self.root} was built for another teacher of language {lang!r}: "
                    f"{cached[lang]['path']} (sha256 {cached[lang]['sha256'][:12]}…), not {path}; "
                    "rebuild the cache or drop --teachers"
                )

    def manifest(self) -> List[dict]:
        """The teachers that produced the cache (same records as ``TeacherSet.manifest()``)."""
        return [dict(t) for t in self.manifest_data["teachers"]]

    # -------------------------------------------------------------- lookups
    def _shard(self, split: str, epoch: int, lang_id: int):
        key = (split, epoch, lang_id)
        if key not in self._shards:
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
            prefix = os.path.join(shard_directory(self.root, split, epoch), self.languages[lang_id])
            try:
                self._shards[key] = tuple(np.load(f"{prefix}.{name}.npy", mmap_mode="r") for name in ("index", "ids", "probs"))
            except (OSError, ValueError) as err:
                raise BalkdError(f"--teacher-cache {self.root}: cannot read {prefix}.*.npy: {err}") from None
        return self._shards[key]

    def lookup(self, split: str, epoch: int, lang_ids: torch.Tensor, sample_ids: torch.Tensor, masked: torch.Tensor):
        """Top-k ids (int64) and probabilities (float32) at the batch's masked positions, row-major.

        Returns ``(ids [M, K], probs [M, K], position_langs [M])`` on ``masked.device``.
        """
        counts = masked.sum(1).cpu().numpy()
        langs = lang_ids.cpu().numpy()
        samples = sample_ids.cpu().numpy()
        first_row = np.cumsum(counts) - counts  # of each sample in the output
        total = int(counts.sum())
        ids = np.empty((total, self.k), dtype=np.int32)
        probs = np.empty((total, self.k), dtype=np.float16)
        for lang_id in np.unique(langs).tolist():
            rows = np.nonzero(langs == lang_id)[0]
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
            source = _ranges(starts, counts[rows])
            target = _ranges(first_row[rows], counts[rows])
            ids[target] = shard_ids[source]
            probs[target] = shard_probs[source]
        device = masked.device
        position_langs = lang_ids.unsqueeze(1).expand_as(masked)[masked]
        return (torch.from_numpy(ids).to(device=device, dtype=torch.long),
                torch.from_numpy(probs).to(device=device, dtype=torch.float32), position_langs)


def read_manifest(root: str) -> dict:
    path = os.path.join(root, MANIFEST)
    if not os.path.isdir(root):
        raise BalkdError(f"--teacher-cache: directory not found: {root} (build it with balkd-cache-teachers)")
    if not os.path.isfile(path):
        raise BalkdError(f"--teacher-cache: {path} not found: {root} is not a finished teacher cache")
    manifest = read_json(path, "--teacher-cache")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_VERSION:
        raise BalkdError(f"--teacher-cache: {path} is not a version-{FORMAT_VERSION} balkd teacher cache manifest")
    return manifest


# ---------------------------------------------------------------------------------- building
def base_splits(task, subsets: Iterable[str]) -> List[str]:
    """'valid,valid_de' -> ['valid']: per-language subsets share their base split's masks."""
    return sorted({task._split_languages(s)[0] for s in subsets if s})


def build_cache(task, teachers, root: str, train_epochs: int, valid_splits: List[str], k: int,
                batch_size: Optional[int], max_tokens: Optional[int], device: torch.device,
                overwrite: bool = False, progress: bool = True) -> dict:
    """Run ``teachers`` over epochs 1..train_epochs of train and epoch 1 of ``valid_splits``; write ``root``.

    The cache is written to ``root.partial`` and renamed when complete, so an interrupted build
    never leaves something that looks like a finished cache; an existing ``root`` is replaced only
    with ``overwrite``.
    """
    if os.path.exists(root) and not overwrite:
        raise BalkdError(f"--cache-dir {root} already exists; pass --overwrite to replace it")
    inputs = [task.cfg.data, *(record.get("path") for record in teachers.manifest())]
    check_replaceable(root, inputs, "--cache-dir", marker=MANIFEST)  # never delete the data or a teacher
    root = os.path.realpath(root)  # a symlinked --cache-dir: write the directory it points to
    vocab = len(task.source_dictionary)
    if not 0 < k <= vocab:
        raise BalkdError(f"--cache-topk must be in 1..{vocab} (the vocabulary size), got {k}")
    splits = {task.train_subset_name: list(range(1, train_epochs + 1))}
    splits.update({split: [1] for split in valid_splits if split != task.train_subset_name})
    partial = root.rstrip(os.sep) + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    manifest = {
        "format": FORMAT_VERSION,
        "topk": k,
        "fingerprint": task_fingerprint(task, splits),
        "teachers": teachers.manifest(),
        "teacher_dtype": _plain(task.cfg.teacher_dtype),
        "splits": splits,
        "rows": {},
    }
    for split, epochs in splits.items():
        for epoch in epochs:
            rows = _cache_split(task, teachers, partial, split, epoch, k, batch_size, max_tokens, device, progress)
            manifest["rows"][f"{split}/epoch{epoch}"] = rows
    with open(os.path.join(partial, MANIFEST), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
    if os.path.exists(root):
        shutil.rmtree(root)
    os.rename(partial, root)
    return manifest


def _cache_split(task, teachers, root, split, epoch, k, batch_size, max_tokens, device, progress) -> Dict[str, int]:
    from fairseq.data import data_utils
    from tqdm import tqdm

    task.load_dataset(split, epoch=epoch)
    dataset = task.dataset(split)
    dataset.set_epoch(epoch)  # exactly what fairseq's iterator does before the student sees a batch
    directory = shard_directory(root, split, epoch)
    os.makedirs(directory, exist_ok=True)
    pad = task.source_dictionary.pad()
    rows = {}
    for part in language_parts(dataset):
        lang_id = int(part[0]["lang_id"])
        lang = task.languages[lang_id]
        sizes = np.asarray(part.sizes, dtype=np.int64).reshape(-1, len(part)).max(0)
        order = np.argsort(sizes, kind="stable")
        batches = data_utils.batch_by_size(order, part.num_tokens, num_tokens_vec=sizes[order], max_tokens=max_tokens,
                                           max_sentences=batch_size or (None if max_tokens else 32))
        writer = ShardWriter(directory, lang, len(part), k)
        for batch in tqdm(batches, desc=f"{split} epoch {epoch} {lang}", unit="batch", disable=not progress, leave=False):
            sample = part.collater([part[int(i)] for i in batch])
            src = sample["net_input"]["src_tokens"].to(device)
            masked = sample["target"].to(device).ne(pad)
            if not masked.any():
                writer.add(sample["id"].numpy(), np.zeros(len(batch), dtype=np.int64), np.empty((0, k)), np.empty((0, k)))
                continue
            logits, _ = teachers.masked_logits(src, masked, sample["lang_id"].to(device))
            top_ids, top_probs = topk_probabilities(logits, k)
            writer.add(sample["id"].numpy(), masked.sum(1).cpu().numpy(), top_ids, top_probs)
        writer.close()
        rows[lang] = writer.rows
    return rows
