"""What decides which tokens a masked-LM sample holds and where it is masked: a JSON-able fingerprint.

The offline teacher cache records it when it is built and compares it when it is opened, so a cache
is never read for other data, masks, balancing or seed. Sections: ``languages``, ``data`` (hashes of
``dict.txt`` and of every language's split files), ``masking``, ``balancing``, ``seed``.
"""
import hashlib
import os
from typing import Iterable, List

from ..files import file_sha256

MASKING_FIELDS = (
    "tokens_per_sample", "sample_break_mode", "mask_prob", "leave_unmasked_prob", "random_token_prob",
    "freq_weighted_replacement", "mask_whole_words", "mask_multiple_length", "mask_stdev", "skip_masking",
    "shorten_method", "shorten_data_split_list",
)
BALANCING_FIELDS = ("balance", "balance_draw", "sampling_alpha", "samples_per_language")
BIN_SAMPLE_BYTES = 1 << 20  # of DATA/<lang>/<split>.bin: the first, middle and last MiB are hashed


def plain(value):
    """Config values as JSON scalars (enums and omegaconf nodes to str, ints stay ints)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)




def sampled_sha256(path: str) -> str:
    """sha256 of a large file's size and its first, middle and last MiB (cheap for corpora of any size)."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for start in sorted({0, max(0, size // 2 - BIN_SAMPLE_BYTES // 2), max(0, size - BIN_SAMPLE_BYTES)}):
            f.seek(start)
            digest.update(f.read(BIN_SAMPLE_BYTES))
    return digest.hexdigest()


def split_fingerprint(prefix: str):
    """One binarized split (``PREFIX.idx``/``.bin``): the .idx hash and the .bin size and sampled hash, or
    "missing". Text added or replaced changes the .idx (every sentence's length and offset is in it)."""
    if not os.path.isfile(prefix + ".idx") or not os.path.isfile(prefix + ".bin"):
        return "missing"
    return {
        "idx_sha256": file_sha256(prefix + ".idx"),
        "bin_bytes": os.path.getsize(prefix + ".bin"),
        "bin_sampled_sha256": sampled_sha256(prefix + ".bin"),
    }


def files_fingerprint(root: str, languages: List[str], splits: Iterable[str]) -> dict:
    """dict.txt hash and, per language and split, the .idx hash and the .bin size and sampled hash."""
    files = {}
    for lang in languages:
        for split in sorted(splits):
            files[f"{lang}/{split}"] = split_fingerprint(os.path.join(root, lang, split))
    return {"dict_sha256": file_sha256(os.path.join(root, "dict.txt")), "files": files}


def masking_fingerprint(cfg, root: str, languages: List[str], splits: Iterable[str]) -> dict:
    """Everything in a task config and its data that decides the masked samples of the given base splits."""
    return {
        "languages": list(languages),
        "data": files_fingerprint(root, languages, splits),
        "masking": {name: plain(getattr(cfg, name, None)) for name in MASKING_FIELDS},
        "balancing": {name: plain(getattr(cfg, name, None)) for name in BALANCING_FIELDS},
        "seed": int(cfg.seed),
    }
