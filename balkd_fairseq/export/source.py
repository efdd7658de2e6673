"""What is exported: a RoBERTa masked-LM checkpoint and the data directory whose vocabulary it uses."""
import logging
import os
from dataclasses import dataclass
from typing import Optional

from fairseq.data import Dictionary

from ..checkpoints import EMBED_KEY, load_checkpoint_state, model_config
from ..data.dictionary_hash import (
    dictionary_sha256,
    load_model_dictionary,
    recorded_dictionary_sha256,
    recorded_languages,
)
from ..errors import BalkdError

logger = logging.getLogger(__name__)

DICT_FILE = "dict.txt"
SPM_FILE = "spm.model"  # balkd-prepare's SentencePiece model (prepare.train_sentencepiece: prefix DATA/spm)
STATS_FILE = "stats.json"  # balkd-prepare's manifest


@dataclass
class ExportSource:
    checkpoint: str
    data: str
    state: dict  # the checkpoint as fairseq loads it (cfg is an OmegaConf config)
    dictionary: Dictionary  # DATA/dict.txt with <mask>, as the masked LM sees it
    recorded_sha256: Optional[str]  # None: an older checkpoint that did not record its dictionary

    @property
    def cfg(self):
        return self.state["cfg"]

    @property
    def dict_file(self) -> str:
        return os.path.join(self.data, DICT_FILE)

    @property
    def spm_file(self) -> str:
        return os.path.join(self.data, SPM_FILE)

    @property
    def stats_file(self) -> Optional[str]:
        path = os.path.join(self.data, STATS_FILE)
        return path if os.path.isfile(path) else None

    @property
    def languages(self):
        return recorded_languages(self.state)


def load_source(checkpoint: str, data: str) -> ExportSource:
    """Load ``checkpoint`` and check it is a RoBERTa masked LM whose vocabulary is ``DATA/dict.txt``."""
    if not os.path.isdir(data):
        raise BalkdError(f"--data: not a directory: {data}")
    for name in (DICT_FILE, SPM_FILE):
        if not os.path.isfile(os.path.join(data, name)):
            raise BalkdError(f"--data: {os.path.join(data, name)} not found (balkd-prepare writes it)")
    state = load_checkpoint_state(checkpoint, "CHECKPOINT")
    model_config(state, "CHECKPOINT", checkpoint)
    dict_file = os.path.join(data, DICT_FILE)
    dictionary = load_model_dictionary(dict_file, "--data")
    recorded = recorded_dictionary_sha256(state)
    if recorded is not None:
        found = dictionary_sha256(dictionary)
        if found != recorded:
            raise BalkdError(
                f"--data: {dict_file} is not the dictionary {checkpoint} was trained with "
                f"(sha256 of its symbols {found[:12]}…, the checkpoint records {recorded[:12]}…)")
    rows = state["model"][EMBED_KEY].shape[0] if EMBED_KEY in state["model"] else None
    if rows != len(dictionary):
        raise BalkdError(
            f"--data: {dict_file} has {len(dictionary)} symbols (with <mask>) but {checkpoint} embeds {rows}")
    if recorded is None:
        logger.warning(f"{checkpoint} records no dictionary hash (an older checkpoint): checked the size only")
    return ExportSource(os.path.abspath(checkpoint), os.path.abspath(data), state, dictionary, recorded)
