"""Per-item scores: what paired bootstrap comparisons between models resample.

Evaluation commands write, next to their JSON results, one compressed ``.npz`` file of per-item
arrays. Every model is scored on the same items in the same order (the masks and sentences are
deterministic), so item ``i`` of two models' arrays is the same test item and the models can be
paired. The report reads these files; nothing else does. Array names are ``<key>/<field>``:

``lm_items.npz`` (balkd-eval-lm), key = language:
  ``<lang>/rr``         float32 [positions]  reciprocal rank of the gold token at each masked position
  ``<lang>/nll``        float32 [positions]  negative log-likelihood (nats) at each masked position
  ``<lang>/pppl_nll``   float32 [sentences]  summed NLL of every token of a sentence masked in turn (``--pppl``)
  ``<lang>/pppl_count`` int32   [sentences]  tokens scored per sentence (``--pppl``)

``probe_items.npz`` (balkd-probe), key = ``<task>/<train_lang>/<test_lang>``, per test sentence:
  pos: ``<key>/correct``, ``<key>/total``  (int32) correctly tagged words / words
  ner: ``<key>/tp``, ``<key>/pred``, ``<key>/gold`` (int32) strict IOB2 entity counts
A group's metric over a resample of items is recomputed from sums (accuracy = sum correct / sum total;
F1 = 2 sum tp / (sum pred + sum gold); MRR = mean rr; MLM-PPL = exp(mean nll); PPPL = exp(sum pppl_nll / sum pppl_count)).
"""
from typing import Dict

import numpy as np

from ..errors import BalkdError
from ..outputs import atomic_write

LM_ITEMS = "lm_items.npz"
PROBE_ITEMS = "probe_items.npz"


def write_items(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """Write ``arrays`` atomically to ``path`` (an ``.npz``)."""
    with atomic_write(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def read_items(path: str) -> Dict[str, np.ndarray]:
    """Every array of an items file (never unpickles objects)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise BalkdError(f"per-item scores not found: {path} (re-run the evaluation that writes it)") from None
    except (OSError, ValueError, EOFError) as err:
        raise BalkdError(f"per-item scores {path} are unreadable: {err}") from None


def group_items(items: Dict[str, np.ndarray], key: str) -> Dict[str, np.ndarray]:
    """The fields stored under ``key`` (e.g. ``'de'`` -> ``{'rr': ..., 'nll': ...}``)."""
    prefix = key + "/"
    return {name[len(prefix):]: value for name, value in items.items() if name.startswith(prefix)}
