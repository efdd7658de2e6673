"""The ``balanced_distill`` task: multilingual masked-LM data, balanced across languages, with language ids.

Data layout (what ``balkd-prepare`` or fairseq-preprocess per language writes)::

    DATA/dict.txt                          one dictionary shared by every language and teacher
    DATA/<lang>/{train,valid,test}.{bin,idx}

Masking and targets are exactly fairseq's ``masked_lm`` (this task subclasses it), so the stock
``--criterion masked_lm`` trains the hard-label baselines and ``--criterion multi_teacher_distill``
trains the student. Every sample carries ``sample["lang_id"]`` (index into ``task.languages``).
"""
import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
from fairseq.data import (
    ConcatDataset,
    IdDataset,
    MaskTokensDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    RightPadDataset,
    PrependTokenDataset,
    RawLabelDataset,
    SortDataset,
    TokenBlockDataset,
    data_utils,
)
from fairseq.data.encoders.utils import get_whole_word_mask
from fairseq.data.shorten_dataset import maybe_shorten_dataset
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask

from ..data.balancing import BALANCE_DRAWS, BALANCE_MODES, draw_epoch
from ..data.language_batches import LanguageBatchedDataset
from ..data.mask_origin import MaskOriginDataset, SampleAddress, sample_address
from ..data.subset_dataset import IndexedSubsetDataset
from ..errors import BalkdError
from ..soft_labels.manifest import MANIFEST_KEY, check_resumed_manifest, record_manifest, recorded_manifest

logger = logging.getLogger(__name__)

PER_LANGUAGE_PREFIX = "_"  # valid_<lang>, test_<lang>


@dataclass
class BalancedDistillConfig(MaskedLMConfig):
    languages: str = field(
        default="",
        metadata={"help": "comma-separated languages to train on (default: every subdirectory of DATA, sorted)"},
    )
    balance: ChoiceEnum(BALANCE_MODES) = field(
        default="subsample",
        metadata={
            "help": "balancing of the train split (see --balance-draw): none = all data; "
            "subsample = every language the smallest language's size (the paper), without replacement; "
            "upsample = every language the largest language's size; temperature = share ∝ size**sampling_alpha"
        },
    )
    balance_draw: ChoiceEnum(BALANCE_DRAWS) = field(
        default="fixed",
        metadata={
            "help": "fixed = one draw from --seed for the whole run (the paper: the rest of a high-resource "
            "language is never seen by the student, only by its teacher); per_epoch = a fresh draw every epoch "
            "from (seed, epoch), so over many epochs all data is seen"
        },
    )
    sampling_alpha: float = field(
        default=0.3, metadata={"help": "exponent of temperature sampling (--balance temperature), as XLM-R"}
    )
    samples_per_language: int = field(
        default=0,
        metadata={"help": "explicit per-language sample count for subsample/upsample/temperature (0 = automatic)"},
    )
    teachers: str = field(
        default="",
        metadata={
            "help": "teacher checkpoint per language: 'de:/x/de.pt,en:/x/en.pt' or a JSON file mapping each "
            "language to a checkpoint path or to {\"checkpoint\": PATH, \"dict\": PATH} (default dictionary: "
            "dict.txt beside the checkpoint); loaded only by criteria that need soft labels"
        },
    )
    teacher_cache: str = field(
        default="",
        metadata={"help": "directory written by balkd-cache-teachers: read the teachers' top-k soft labels from it "
                          "instead of running teachers (teachers are then not loaded; with --teachers their files "
                          "are checked against the cache); refused if built for other data, masks, seed, epochs or "
                          "teachers"},
    )
    teacher_dtype: ChoiceEnum(["fp32", "fp16", "bf16"]) = field(
        default="fp32", metadata={"help": "dtype teachers run in (fp16/bf16 halve their memory on GPUs)"}
    )
    teacher_offload: bool = field(
        default=False,
        metadata={"help": "keep teachers on CPU and move each to the device only for its language's group"},
    )
    max_resident_teachers: int = field(
        default=0,
        metadata={"help": "hold at most K teachers at once (0 = all): each is loaded on first use and the least "
                          "recently used one dropped; every teacher is still checked at start-up. Combine with "
                          "--batch-by-language so consecutive batches reuse a teacher (teacher_loads in the log)"},
    )
    batch_by_language: bool = field(
        default=False,
        metadata={"help": "language-homogeneous batches (a batch touches one teacher); the train order is still shuffled"},
    )
    reset_teachers: bool = field(
        default=False,
        metadata={
            "help": "resume from a checkpoint trained with other teachers (another checkpoint content or language "
            "set than its teacher manifest records); without it such a resume is an error"
        },
    )


@register_task("balanced_distill", dataclass=BalancedDistillConfig)
class BalancedDistillTask(MaskedLMTask):
    """Balanced multilingual masked-LM training; language ids route samples to their teacher."""

    cfg: BalancedDistillConfig

    def __init__(self, cfg: BalancedDistillConfig, dictionary=None):
        super().__init__(cfg, dictionary)
        self.languages: List[str] = self._resolve_languages(cfg)
        self._blocks = {}  # (split, lang) -> token blocks, built once per process

    @classmethod
    def load_dict(cls, cfg):
        path = os.path.join(cls._data_root(cfg), "dict.txt")
        if not os.path.isfile(path):
            raise BalkdError(f"shared dictionary not found: {path} (expected DATA/dict.txt next to DATA/<lang>/)")
        return super().load_dict(cfg)

    @staticmethod
    def _data_root(cfg) -> str:
        return cfg.data.split(os.pathsep)[0]

    def _resolve_languages(self, cfg) -> List[str]:
        root = self._data_root(cfg)
        if cfg.languages:
            languages = [lang.strip() for lang in cfg.languages.split(",") if lang.strip()]
        else:
            languages = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
        if not languages:
            raise BalkdError(f"no languages: {root} has no language subdirectories and --languages is empty")
        for lang in languages:
            if not os.path.isdir(os.path.join(root, lang)):
                raise BalkdError(f"language {lang!r} from --languages has no directory {os.path.join(root, lang)}")
        if len(set(languages)) != len(languages):
            raise BalkdError(f"--languages lists a language twice: {','.join(languages)}")
        return languages

    def has_sharded_data(self, split):
        # fairseq reloads (and re-batches) a split every epoch only when it is "sharded": that is
        # how each epoch gets a fresh balanced draw in a freshly shuffled order.
        return split == self.train_subset_name and self.cfg.balance != "none"

    # ------------------------------------------------------------------ data loading
    def language_blocks(self, split: str, lang: str):
        """Token blocks of one language and split, with <s> prepended (cached per process)."""
        key = (split, lang)
        if key not in self._blocks:
            self._blocks[key] = self._load_language_blocks(split, lang)
        return self._blocks[key]

    def _load_language_blocks(self, split: str, lang: str):
        path = os.path.join(self._data_root(self.cfg), lang, split)
        if not os.path.isfile(path + ".idx") or not os.path.isfile(path + ".bin"):
            raise BalkdError(f"language {lang!r} has no {split} split: {path}.{{bin,idx}} not found")
        if os.path.getsize(path + ".bin") == 0:
            raise BalkdError(f"language {lang!r} has an empty {split} split: {path}.bin")
        try:
            dataset = data_utils.load_indexed_dataset(path, self.source_dictionary)
        except Exception as err:
            raise BalkdError(f"language {lang!r}: cannot read {path}.{{bin,idx}}: {err}") from None
        if dataset is None or len(dataset) == 0:
            raise BalkdError(f"language {lang!r} has an empty {split} split: {path}.bin")
        dataset = maybe_shorten_dataset(
            dataset, split, self.cfg.shorten_data_split_list, self.cfg.shorten_method,
            self.cfg.tokens_per_sample, self.cfg.seed,
        )
        blocks = TokenBlockDataset(
            dataset, dataset.sizes, self.cfg.tokens_per_sample - 1,
            pad=self.source_dictionary.pad(), eos=self.source_dictionary.eos(),
            break_mode=self.cfg.sample_break_mode,
        )
        return PrependTokenDataset(blocks, self.source_dictionary.bos())

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        base_split, languages = self._split_languages(split)
        blocks = [self.language_blocks(base_split, lang) for lang in languages]
        lang_ids = [self.languages.index(lang) for lang in languages]
        if base_split == self.train_subset_name and self.cfg.balance != "none":
            blocks = self._balanced(blocks, languages, lang_ids, epoch)
        parts = [self._with_masks_and_lang(ds, lang_id, base_split) for ds, lang_id in zip(blocks, lang_ids)]
        dataset = ConcatDataset(parts)
        sample_langs = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in zip(lang_ids, parts)])
        self.datasets[split] = self._ordered(dataset, sample_langs, epoch)
        logger.info(f"{split} (epoch {epoch}): {len(dataset)} samples over {len(languages)} language(s)")

    train_subset_name = "train"

    def _split_languages(self, split: str):
        """'valid' -> all languages; 'valid_de' -> just de."""
        if split in self.languages:
            raise BalkdError(f"split name {split!r} is a language; use {split}_<lang> style names")
        for lang in self.languages:
            suffix = PER_LANGUAGE_PREFIX + lang
            if split.endswith(suffix) and len(split) > len(suffix):
                return split[: -len(suffix)], [lang]
        return split, list(self.languages)

    def _balanced(self, blocks, languages, lang_ids, epoch):
        sizes = [len(ds) for ds in blocks]
        draw_number = epoch if self.cfg.balance_draw == "per_epoch" else 1
        draws = draw_epoch(
            sizes, self.cfg.balance, self.cfg.seed, draw_number,
            alpha=self.cfg.sampling_alpha, samples_per_language=self.cfg.samples_per_language or None,
        )
        for lang, size, drawn in zip(languages, sizes, draws):
            logger.info(
                f"balance={self.cfg.balance} epoch {epoch} (draw {draw_number}): {lang}: "
                f"{size} samples -> {len(drawn)} sampled"
            )
        return [IndexedSubsetDataset(ds, idx) for ds, idx in zip(blocks, draws)]

    def _with_masks_and_lang(self, dataset, lang_id: int, base_split: str = ""):
        mask_whole_words = (
            get_whole_word_mask(self.args, self.source_dictionary) if self.cfg.mask_whole_words else None
        )
        src, tgt = MaskTokensDataset.apply_mask(
            dataset, self.source_dictionary,
            pad_idx=self.source_dictionary.pad(), mask_idx=self.mask_idx,
            seed=self.cfg.seed + lang_id,  # distinct masks for index i of different languages
            mask_prob=self.cfg.mask_prob, leave_unmasked_prob=self.cfg.leave_unmasked_prob,
            random_token_prob=self.cfg.random_token_prob,
            freq_weighted_replacement=self.cfg.freq_weighted_replacement,
            mask_whole_words=mask_whole_words, mask_multiple_length=self.cfg.mask_multiple_length,
            mask_stdev=self.cfg.mask_stdev, skip_masking=self.cfg.skip_masking,
        )
        pad = self.source_dictionary.pad()
        return NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": {"src_tokens": RightPadDataset(src, pad_idx=pad), "src_lengths": NumelDataset(src, reduce=False)},
                "target": RightPadDataset(tgt, pad_idx=pad),
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(src, reduce=True),
                "lang_id": RawLabelDataset(np.full(len(src), lang_id, dtype=np.int64)),
                "mask_origin": MaskOriginDataset(base_split),  # (split, epoch): the teacher cache's address
            },
            sizes=[src.sizes],
        )

    def _ordered(self, dataset, sample_langs, epoch):
        with data_utils.numpy_seed(self.cfg.seed, epoch):
            shuffle = np.random.permutation(len(dataset))
        if self.cfg.batch_by_language:
            return LanguageBatchedDataset(dataset, sort_order=[shuffle, dataset.sizes], sample_langs=sample_langs)
        return SortDataset(dataset, sort_order=[shuffle, dataset.sizes])

    # ------------------------------------------------------------------ soft labels (teachers)
    def build_soft_label_source(self):
        """The soft labels the flags ask for (``--teacher-cache`` or ``--teachers``), checked, with their
        teacher manifest recorded in the task state (hence in every checkpoint)."""
        if self.cfg.teacher_cache:
            from ..soft_labels.cache import TeacherCache

            source = TeacherCache.open(self.cfg.teacher_cache, self)
            logger.info(f"soft labels from the teacher cache {self.cfg.teacher_cache}; teachers are not loaded")
        elif self.cfg.teachers:
            from ..soft_labels.online import TeacherSet

            source = TeacherSet.from_task(self)
        else:
            raise BalkdError("soft labels need --teachers (teacher checkpoints) or --teacher-cache (a balkd-cache-teachers directory)")
        record_manifest(self.state, source.manifest())
        return source

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        # fairseq's criterion hook is a static method: per-language metrics need the criterion's language names
        reduce_per_language = getattr(criterion, "reduce_per_language_metrics", None)
        if reduce_per_language is not None:
            reduce_per_language(logging_outputs)

    # ------------------------------------------------------------------ PROVISIONAL (branch `soft`)
    # The task helper's rewrite provides sample_address, data_fingerprint and language_datasets;
    # keep theirs at merge. These delegate to today's mechanisms.
    def sample_address(self, sample) -> SampleAddress:
        """Split, mask epoch, language ids and per-language sample ids of a collated batch."""
        return sample_address(sample)

    def data_fingerprint(self, splits) -> dict:
        """Everything that decides the samples and masks of the given base splits."""
        from ..data.fingerprint import task_fingerprint

        return task_fingerprint(self, splits)

    def language_datasets(self, split: str, epoch: int):
        """[(lang_id, dataset)] of a split at ``epoch``: each language's masked samples, ids from 0."""
        self.load_dataset(split, epoch=epoch)
        dataset = self.dataset(split)
        dataset.set_epoch(epoch)  # exactly what fairseq's iterator does before the student sees a batch
        while not hasattr(dataset, "datasets"):
            dataset = dataset.dataset
        languages = self._split_languages(split)[1]
        return [(self.languages.index(lang), part) for lang, part in zip(languages, dataset.datasets)]

    # ------------------------------------------------------------------ teacher manifest (task state)
    @property
    def teacher_manifest(self) -> Optional[List[dict]]:
        """Which teacher served each language (path, sha256, dictionary sha256); None before teachers load."""
        return recorded_manifest(self.state)

    def load_state_dict(self, state_dict):
        """Restore task state; a recorded teacher manifest is checked against the loaded teachers."""
        state_dict = dict(state_dict or {})
        recorded = state_dict.pop(MANIFEST_KEY, None)
        super().load_state_dict(state_dict)
        if recorded is None:
            return
        check_resumed_manifest(recorded, self.teacher_manifest, self.cfg.reset_teachers)
        if self.teacher_manifest is None:  # no teachers in this process (from_pretrained, hard-label runs)
            record_manifest(self.state, recorded)

    # fairseq saves ``task.state_dict()`` as the checkpoint's task_state but does not restore it when a
    # run resumes; its resume hook for tasks is this pair (saved in, and restored from, extra_state).
    def get_checkpoint_dict(self):
        return {self.__class__.__name__: {"task_state": self.state_dict()}}

    def set_checkpoint_dict(self, checkpoint_dict):
        self.load_state_dict(checkpoint_dict.get("task_state", {}))
