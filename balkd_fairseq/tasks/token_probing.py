"""The ``token_probing`` task: word-level tagging (POS / NER) probes on a frozen pretrained encoder.

``DATA`` is one language's probing directory, as ``balkd-synth`` writes it::

    PROBE_DIR/pos/<lang>/{train,dev,test}.conllu      UD CoNLL-U, UPOS column
    PROBE_DIR/ner/<lang>/{train,dev,test}.iob2        WikiANN-style token<TAB>tag

Split ``train`` reads ``train.<ext>``, ``valid`` reads ``dev.<ext>`` (or ``valid.<ext>``), ``test``
reads ``test.<ext>``; ``<split>_<lang>`` (e.g. ``test_de``) reads that split of a sibling language
directory, for zero-shot evaluation. Words are split with the LM's SentencePiece model and labelled
on their first subword. By default each split's first-subword features are computed once (under
``torch.no_grad()``) and the probe trains on the cache; ``--no-feature-cache`` runs the frozen
encoder on every batch instead. Either way the encoder's weights never change.

Example::

    fairseq-train PROBE_DIR/pos/de --user-dir balkd_fairseq --task token_probing \\
        --pretrained ckpts/HL/checkpoint_best.pt --pretrained-data DATA \\
        --arch linear_probe --criterion token_probing --optimizer adam --lr 1e-3 \\
        --batch-size 32 --max-epoch 10 --best-checkpoint-metric accuracy --maximize-best-checkpoint-metric
"""
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch
from fairseq.data import (
    BaseWrapperDataset,
    IdDataset,
    ListDataset,
    NestedDictionaryDataset,
    NumSamplesDataset,
    RightPadDataset,
    SortDataset,
    data_utils,
)
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.tasks import FairseqTask, register_task
from omegaconf import II, MISSING

from ..data.subword_alignment import IGNORE_INDEX
from ..errors import BalkdError
from ..task_run import start_task_run
from ..eval.features import FrozenEncoder
from ..eval.probing_data import READERS, LabelSet, count_cut_words, encode_split, load_sentencepiece, read_tagged

logger = logging.getLogger(__name__)

SPLIT_FILE_STEMS = {"train": ["train"], "valid": ["dev", "valid"], "test": ["test"]}


@dataclass
class TokenProbingConfig(FairseqDataclass):
    data: str = field(
        default=MISSING,
        metadata={"help": "one language's probing directory with train/dev/test files (.conllu for POS, .iob2 for NER)"},
    )
    data_format: ChoiceEnum(["auto", *READERS]) = field(
        default="auto", metadata={"help": "file format; auto = by file extension (.conllu or .iob2)"}
    )
    labels: str = field(
        default="", metadata={"help": "comma-separated label set (default: every tag of the train file, sorted)"}
    )
    pretrained: str = field(default="", metadata={"help": "checkpoint of the pretrained masked LM to probe (required)"})
    pretrained_data: str = field(
        default="",
        metadata={"help": "the LM's DATA directory (dict.txt, spm.model); default: the data path stored in the checkpoint"},
    )
    spm_model: str = field(
        default="", metadata={"help": "SentencePiece model the LM was trained with (default: <pretrained data>/spm.model)"}
    )
    probe_layer: int = field(
        default=-1, metadata={"help": "encoder layer whose states are probed: 0 = embeddings, N = last; -1 = last"}
    )
    no_feature_cache: bool = field(
        default=False,
        metadata={"help": "run the frozen encoder on every batch instead of caching each split's features once"},
    )
    feature_batch_tokens: int = field(
        default=4096, metadata={"help": "tokens per batch when computing the cached features"}
    )
    seed: int = II("common.seed")


class PaddedFeaturesDataset(BaseWrapperDataset):
    """Items are (length, dim) float tensors; batches are zero-padded to (batch, longest, dim)."""

    def collater(self, samples):
        longest = max(len(s) for s in samples)
        batch = samples[0].new_zeros(len(samples), longest, samples[0].size(-1))
        for row, sample in enumerate(samples):
            batch[row, : len(sample)] = sample
        return batch


@register_task("token_probing", dataclass=TokenProbingConfig)
class TokenProbingTask(FairseqTask):
    """Train and evaluate ``linear_probe`` / ``mlp_probe`` models on word-level tags."""

    cfg: TokenProbingConfig

    def __init__(self, cfg: TokenProbingConfig, frozen_encoder: FrozenEncoder, sp, label_set: LabelSet):
        super().__init__(cfg)
        self.frozen_encoder = frozen_encoder
        self.sp = sp
        self.label_set = label_set

    @property
    def labels(self):
        return self.label_set.labels

    @classmethod
    def setup_task(cls, cfg: TokenProbingConfig, **kwargs):
        start_task_run()  # one-line errors, atomic checkpoints, --save-dir lock: for runs of this task only
        if not os.path.isdir(cfg.data):
            raise BalkdError(f"probing data directory not found: {cfg.data}")
        if not cfg.pretrained:
            raise BalkdError("--pretrained is required: the checkpoint of the masked LM to probe")
        device = "cuda" if torch.cuda.is_available() else "cpu"
        encoder = FrozenEncoder.from_checkpoint(cfg.pretrained, cfg.pretrained_data or None, cfg.probe_layer, device)
        sp = load_sentencepiece(cfg.spm_model or _default_spm_model(encoder.data_dir))
        task = cls(cfg, encoder, sp, label_set=None)
        task.label_set = task._label_set()
        logger.info(f"token_probing: {len(task.labels)} labels, layer {encoder.layer} of {encoder.num_layers}")
        return task

    def _label_set(self) -> LabelSet:
        if self.cfg.labels:
            return LabelSet([label.strip() for label in self.cfg.labels.split(",") if label.strip()])
        return LabelSet.from_sentences(read_tagged(self.split_path("train"), self.cfg.data_format))

    def split_path(self, split: str) -> str:
        """File of ``split``: train/valid/test in DATA, or ``<split>_<lang>`` in DATA's sibling ``<lang>``."""
        directory, base = self.cfg.data, split
        stem, sep, lang = split.rpartition("_")
        if split not in SPLIT_FILE_STEMS and sep and stem in SPLIT_FILE_STEMS:
            directory, base = os.path.join(os.path.dirname(os.path.normpath(self.cfg.data)), lang), stem
        extensions = list(READERS) if self.cfg.data_format == "auto" else [self.cfg.data_format]
        candidates = [os.path.join(directory, f"{s}.{ext}") for s in SPLIT_FILE_STEMS.get(base, [base]) for ext in extensions]
        for path in candidates:
            if os.path.isfile(path):
                return path
        raise BalkdError(f"no file for split {split!r}: none of {', '.join(candidates)} exists")

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        path = self.split_path(split)
        encoded = encode_split(
            read_tagged(path, self.cfg.data_format), self.label_set, self.sp,
            self.frozen_encoder.dictionary, self.frozen_encoder.max_positions,
        )
        if count_cut_words(encoded):
            logger.warning(f"{path}: {count_cut_words(encoded)} words beyond the encoder's length limit are not scored")
        if self.cfg.no_feature_cache:
            inputs = [a.tokens for a in encoded.aligned]
            targets = [a.labels for a in encoded.aligned]
            net_input = {"src_tokens": RightPadDataset(ListDataset(inputs), pad_idx=self.frozen_encoder.dictionary.pad())}
        else:
            inputs = self.frozen_encoder.word_features(encoded.aligned, self.cfg.feature_batch_tokens)
            targets = [a.labels[a.labels.ne(IGNORE_INDEX)] for a in encoded.aligned]
            net_input = {"features": PaddedFeaturesDataset(ListDataset(inputs))}
        sizes = np.array([len(t) for t in targets])
        dataset = NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": net_input,
                "target": RightPadDataset(ListDataset(targets, sizes), pad_idx=IGNORE_INDEX),
                "nsentences": NumSamplesDataset(),
                "ntokens": _LabelledWordCount(ListDataset(targets, sizes)),
            },
            sizes=[sizes],
        )
        with data_utils.numpy_seed(self.cfg.seed):
            shuffle = np.random.permutation(len(dataset))
        self.datasets[split] = SortDataset(dataset, sort_order=[shuffle, sizes])
        logger.info(f"{split}: {len(dataset)} sentences from {path}")

    @property
    def source_dictionary(self):
        return None

    @property
    def target_dictionary(self):
        return None


def _default_spm_model(data_dir: str) -> str:
    """DATA/spm.model; a checkpoint trained on DATA/<lang> (a teacher) finds it one level up."""
    candidates = [os.path.join(data_dir, "spm.model"), os.path.join(os.path.dirname(os.path.normpath(data_dir)), "spm.model")]
    found = [path for path in candidates if os.path.isfile(path)]
    if not found:
        raise BalkdError(f"SentencePiece model not found at {' or '.join(candidates)}; pass --spm-model")
    return found[0]


class _LabelledWordCount(BaseWrapperDataset):
    """Batch statistic: the number of labelled words (first subwords) in the batch."""

    def collater(self, samples):
        return sum(int(s.ne(IGNORE_INDEX).sum()) for s in samples)
