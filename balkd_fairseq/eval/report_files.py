"""The files one ``balkd-report`` writes into ``--output-dir``: ``<prefix>.md``, ``.csv``, ``_compare.csv``, ``.png``.

A report directory often holds other things (other prefixes, sub-reports), so it is not claimed as a whole.
Instead, a file of this report's names is replaced only when an earlier balkd-report wrote it (recognised by
its first bytes), and one this run does not write again (the comparisons of a run without ``--compare``, the
plot of a ``--no-plot`` run) is removed: left beside the new table it would describe other models.
"""
import logging
import os
from typing import Callable, Dict, List

from ..errors import BalkdError

logger = logging.getLogger(__name__)

# how each output looks when balkd-report wrote it, this version or an older one (whose CSV rows were
# "group,HL MRR,..."); the table may follow an --allow-mixed banner of any length
SIGNATURES: Dict[str, Callable[[bytes], bool]] = {
    ".md": lambda head: b"| group |" in head,
    ".csv": lambda head: head.startswith(b"group,"),
    "_compare.csv": lambda head: head.startswith(b"group,"),
    ".png": lambda head: head.startswith(b"\x89PNG") and b"Matplotlib version" in head[:4096],
}
HEAD_BYTES = 1 << 20


def _written_by_report(path: str, suffix: str) -> bool:
    with open(path, "rb") as f:
        return SIGNATURES[suffix](f.read(HEAD_BYTES))


def check_replaceable(stem: str) -> None:
    """Refuse before any work when a file of this report's names is not an earlier report's (a user's file)."""
    for suffix in SIGNATURES:
        path = stem + suffix
        if os.path.isdir(path):
            raise BalkdError(f"--output-dir: {path} is a directory; balkd-report writes a file of that name")
        if os.path.isfile(path) and not _written_by_report(path, suffix):
            raise BalkdError(f"--output-dir: {path} was not written by balkd-report; refusing to replace it "
                             "(move it, or use another --output-dir or --prefix)")


def remove_stale(stem: str, written: List[str]) -> None:
    """Remove the earlier report's files that this run did not write again."""
    for suffix in SIGNATURES:
        path = stem + suffix
        if path not in written and os.path.isfile(path) and _written_by_report(path, suffix):
            os.remove(path)
            logger.info(f"removed {path}: an earlier report's, which this one does not replace")
