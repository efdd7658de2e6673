"""What is exported: a RoBERTa masked-LM checkpoint and the data directory whose vocabulary it uses."""
import os
from dataclasses import dataclass
from typing import Optional

from fairseq.data import Dictionary

from ..checkpoints import load_checkpoint_state, model_config
from ..data.dictionary_check import check_checkpoint_dictionary
from ..data.dictionary_hash import load_model_dictionary, recorded_dictionary_sha256, recorded_languages
from ..data.sentencepiece_check import check_sentencepiece_matches
from ..errors import BalkdError

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
    dictionary_checked: str = "hash"  # what dict.txt was checked against: hash, beside (a dict.txt there) or size

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
    checked = check_checkpoint_dictionary(state, checkpoint, dict_file)
    dictionary = load_model_dictionary(dict_file, "--data")
    check_sentencepiece_matches(os.path.join(data, SPM_FILE), dictionary, dict_file, data, "--data")
    return ExportSource(os.path.abspath(checkpoint), os.path.abspath(data), state, dictionary,
                        recorded_dictionary_sha256(state), checked)
