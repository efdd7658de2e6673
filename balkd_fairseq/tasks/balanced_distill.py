"""The ``balanced_distill`` task: multilingual masked-LM data, balanced across languages, with language ids.

Data layout (what ``balkd-prepare`` or fairseq-preprocess per language writes)::

    DATA/dict.txt                          one dictionary shared by every language and teacher
    DATA/<lang>/{train,valid,test}.{bin,idx}

Each language's blocks are loaded by fairseq's own ``masked_lm`` loading (see ``data/blocks.py``) and
masked exactly as fairseq's ``masked_lm`` masks them (this task subclasses it), so the stock
``--criterion masked_lm`` trains the hard-label baselines and ``--criterion multi_teacher_distill``
trains the student. Every sample carries ``sample["lang_id"]`` (index into ``task.languages``).

The training subset (``--train-subset``) is balanced across languages; with ``--balance-draw
per_epoch`` its draw, and for every balancing its batch order, change with the epoch (fairseq
re-batches it every epoch because the dataset says its epoch iterator cannot be reused).

Built for inference (``from_pretrained``, ``load_model_ensemble``) the task needs only
``DATA/dict.txt``: the languages are the ones the checkpoint recorded, and data is looked for only
when a split is loaded. Every checkpoint records the resolved language list (``cfg.task.languages``)
and the dictionary's hash (``task_state["dictionary_sha256"]``).
"""
import logging
import math
import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
from fairseq import utils
from fairseq.criterions import CRITERION_REGISTRY
from fairseq.data import (
    ConcatDataset,
    IdDataset,
    NestedDictionaryDataset,
    NumelDataset,
    NumSamplesDataset,
    RawLabelDataset,
    RightPadDataset,
)
from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.masked_lm import MaskedLMConfig, MaskedLMTask
from omegaconf import II, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from ..data.balancing import BALANCE_DRAWS, BALANCE_MODES, target_sizes
from ..data.blocks import SharedReplacementWeights, language_blocks, masked_pair
from ..data.dictionary_check import check_checkpoint_dictionary
from ..data.dictionary_hash import DICTIONARY_HASH_KEY, dictionary_sha256, load_model_dictionary, record_dictionary
from ..data.epoch_order import EpochShuffledDataset
from ..data.fingerprint import masking_fingerprint
from ..data.language_batches import LanguageBatchedDataset
from ..data.language_runs import LanguageRunBatchIterator
from ..data.languages import SUBSET_LANGUAGE_SEPARATOR, resolve_languages, split_and_language
from ..data.mask_origin import MaskOriginDataset, SampleAddress
from ..data.resume_settings import (
    RESUME_SETTINGS,
    check_resume_settings,
    loaded_checkpoint,
    read_records,
    read_state,
    resumed_checkpoint,
    shard_suffix,
    stop_if_finished,
)
from ..data.split_batches import check_blocks_fit, check_split_has_batches
from ..data.subset_dataset import EpochSubsetDataset, LanguageDraw
from ..data.word_starts import sentencepiece_word_starts
from ..errors import BalkdError
from ..soft_labels.fallback import FALLBACK_RULES
from ..soft_labels.manifest import MANIFEST_KEY, check_resumed_manifest, record_manifest, recorded_manifest
from ..task_run import chosen_for_this_run, fairseq_run_config, start_task_run
from .run_checks import check_model_positions, check_run_config

logger = logging.getLogger(__name__)

DEFAULT_TRAIN_SUBSET = "train"  # fairseq's --train-subset default


@dataclass
class BalancedDistillConfig(MaskedLMConfig):
    languages: str = field(
        default="",
        metadata={"help": "comma-separated languages to train on (default: every subdirectory of DATA not starting "
                          "with '.', sorted); codes cannot contain '_'. Checkpoints record the resolved list"},
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
        default=0.3, metadata={"help": "exponent of temperature sampling (--balance temperature), as XLM-R; >= 0"}
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
    teacher_fallback: str = field(
        default="",
        metadata={"help": "a fallback model checkpoint (typically the HL-balanced student; same dictionary) that serves "
                          "the languages whose own teacher is worse on validation data (--teacher-fallback-rule); "
                          "chosen once at start-up, logged per language and recorded in the teacher manifest and "
                          "the teacher cache"},
    )
    teacher_fallback_rule: ChoiceEnum(FALLBACK_RULES) = field(
        default="valid-loss",
        metadata={"help": "with --teacher-fallback: valid-loss = a language uses the fallback's soft labels when its "
                          "own teacher's masked-LM loss on --teacher-fallback-subset is higher (same masks for both)"},
    )
    teacher_fallback_subset: str = field(
        default="valid", metadata={"help": "with --teacher-fallback: the split of DATA/<lang>/ the models are compared on"},
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
    language_run_batches: int = field(
        default=1,
        metadata={"help": "with --batch-by-language: shuffle the train order in runs of R consecutive steps of one "
                          "language instead of batch by batch, so --max-resident-teachers K < languages does not "
                          "reload a teacher every step (order still deterministic from --seed and the epoch)"},
    )
    reset_teachers: bool = field(
        default=False,
        metadata={
            "help": "resume from a checkpoint trained with other teachers (another checkpoint content or language "
            "set than its teacher manifest records); without it such a resume is an error"
        },
    )
    reset_data_settings: bool = field(
        default=False,
        metadata={
            "help": "resume from a checkpoint whose data settings differ from this run's (languages, "
            "--train-subset, --balance, --balance-draw, --sampling-alpha, --samples-per-language, "
            "--tokens-per-sample, --sample-break-mode, shortening, --batch-by-language, --seed) or that "
            "records none (older checkpoints); without it such a resume is an error"
        },
    )
    train_subset: str = II("dataset.train_subset")


def check_settings(cfg) -> None:
    """The numeric settings' ranges, checked once for every entry point (fairseq-train, hydra, balkd-*)."""

    def finite(name, value):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise BalkdError(f"--{name.replace('_', '-')} must be a finite number, got {value!r}")
        return value

    def at_least(name, low):
        if finite(name, getattr(cfg, name)) < low:
            raise BalkdError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(cfg, name)!r}")

    def probability(name, low_open=False, high_open=False):
        value = finite(name, getattr(cfg, name))
        if value < 0 or value > 1 or (low_open and value == 0) or (high_open and value == 1):
            bounds = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
            raise BalkdError(f"--{name.replace('_', '-')} must be in {bounds}, got {value!r}")

    at_least("sampling_alpha", 0)
    at_least("samples_per_language", 0)
    at_least("language_run_batches", 1)
    if cfg.language_run_batches > 1 and not cfg.batch_by_language:
        raise BalkdError("--language-run-batches needs --batch-by-language (a run is of one-language batches)")
    if cfg.samples_per_language and str(cfg.balance) == "none":
        raise BalkdError("--samples-per-language needs a balancing mode (--balance subsample, upsample or "
                         "temperature): --balance none trains on every sample as it is")
    at_least("tokens_per_sample", 2)  # one position is <s>
    at_least("mask_multiple_length", 1)
    at_least("mask_stdev", 0)
    probability("mask_prob", low_open=True, high_open=True)
    probability("leave_unmasked_prob")
    probability("random_token_prob")
    if cfg.leave_unmasked_prob + cfg.random_token_prob > 1:
        raise BalkdError(
            f"--leave-unmasked-prob + --random-token-prob must be <= 1, got {cfg.leave_unmasked_prob} + "
            f"{cfg.random_token_prob}"
        )
    if getattr(cfg, "d2v2_multi", False):
        raise BalkdError("--d2v2-multi (data2vec's multi-modal batches) is not supported by --task balanced_distill")
    if len(utils.split_paths(cfg.data)) > 1:
        raise BalkdError(
            f"DATA {cfg.data!r} contains {os.pathsep!r}: --task balanced_distill reads one data directory "
            "(fairseq's round-robin over ':'-separated directories is not supported; rename a path with ':')"
        )


def _root_config(cfg):
    """The whole run's config a task config belongs to (what fairseq's trainer saves), or None."""
    if not OmegaConf.is_config(cfg):
        return None
    parent = cfg._get_parent()
    return parent if parent is not None and "task" in parent else None


@register_task("balanced_distill", dataclass=BalancedDistillConfig)
class BalancedDistillTask(MaskedLMTask):
    """Balanced multilingual masked-LM training; language ids route samples to their teacher."""

    cfg: BalancedDistillConfig

    @classmethod
    def add_args(cls, parser):
        if chosen_for_this_run("balanced_distill"):  # one-line errors from fairseq's start-up checks on
            start_task_run()
        super().add_args(parser)

    def __init__(self, cfg: BalancedDistillConfig, dictionary=None, for_inference: bool = False):
        super().__init__(cfg, dictionary)
        self.state.merge_state_dict({DICTIONARY_HASH_KEY: dictionary_sha256(self.dictionary)})
        self._blocks = {}  # (split, lang, combine) -> token blocks, built once per process
        self._parts = {}  # loaded split -> [(lang_id, masked dataset of that language)]
        self._replacement_weights = SharedReplacementWeights()  # one copy for every language's mask views
        self._word_starts = None  # --mask-whole-words: built on first use
        self.for_inference = for_inference
        if for_inference:
            # only the dictionary is needed; the languages are the ones the checkpoint recorded (if any)
            # (unchecked: a checkpoint written before the codes were checked must still load)
            self.languages: List[str] = [lang.strip() for lang in str(cfg.languages or "").split(",") if lang.strip()]
            return
        check_settings(cfg)
        self.languages = resolve_languages(self.data_root, cfg.languages)
        check_run_config(cfg, _root_config(cfg), self.languages)
        self._record_languages()
        if fairseq_run_config() is not None:  # a training run (not eval-lm or a cache build with its flags)
            self._check_resume()

    @classmethod
    def setup_task(cls, cfg, from_checkpoint=False, **kwargs):
        if from_checkpoint:  # loading a model for inference changes nothing in the process
            return cls(cfg, cls.load_dict(cfg), for_inference=True)
        checkpoint = start_task_run()  # one-line errors, atomic checkpoints, --save-dir lock: for runs of this task only
        task = cls(cfg, cls.load_dict(cfg))
        if checkpoint is not None and not getattr(checkpoint, "no_save", False):
            # the save dir then loads on its own (from_pretrained, --teacher-fallback)
            record_dictionary(os.path.join(task.data_root, "dict.txt"), checkpoint.save_dir)
        return task

    @classmethod
    def load_dict(cls, cfg):
        path = os.path.join(utils.split_paths(cfg.data)[0], "dict.txt")
        if not os.path.isfile(path):
            raise BalkdError(f"shared dictionary not found: {path} (expected DATA/dict.txt next to DATA/<lang>/)")
        load_model_dictionary(path, "DATA/dict.txt")  # one line for a malformed file (e.g. a duplicate symbol)
        return super().load_dict(cfg)

    def build_model(self, cfg, from_checkpoint=False):
        model = super().build_model(cfg, from_checkpoint)
        if not from_checkpoint and not self.for_inference:  # a model to train on this task's blocks
            check_model_positions(model, self.cfg.tokens_per_sample)
        return model

    def build_criterion(self, cfg, from_checkpoint=False):
        criterion = CRITERION_REGISTRY.get(getattr(cfg, "_name", None))
        if (self.cfg.teachers or self.cfg.teacher_cache) and not getattr(criterion, "consumes_soft_labels", False):
            logger.warning(f"--teachers/--teacher-cache are ignored: --criterion {getattr(cfg, '_name', '?')} trains on hard labels "
                           "(use --criterion multi_teacher_distill to distil from the teachers)")
        return super().build_criterion(cfg, from_checkpoint=from_checkpoint)

    @property
    def data_root(self) -> str:
        return utils.split_paths(self.cfg.data)[0]

    @staticmethod
    def _data_root(cfg) -> str:  # kept for teacher_cache.py until it uses data_fingerprint()
        return utils.split_paths(cfg.data)[0]

    @property
    def train_subset_name(self) -> str:
        """``--train-subset`` (fairseq's ``dataset.train_subset``); 'train' when built outside fairseq-train."""
        try:
            name = self.cfg.train_subset
        except OmegaConfBaseException:  # an interpolation with no run config to resolve it in
            return DEFAULT_TRAIN_SUBSET
        if not isinstance(name, str) or not name or name.startswith("${"):
            return DEFAULT_TRAIN_SUBSET
        return name

    # ------------------------------------------------------------------ what checkpoints record
    def _record_languages(self) -> None:
        """Write the resolved languages into this task's config and the run config fairseq saves."""
        value = ",".join(self.languages)
        root = _root_config(self.cfg)
        for node in [self.cfg] + ([root.task] if root is not None else []):
            if OmegaConf.is_config(node):
                with open_dict(node):
                    node.languages = value
            else:
                node.languages = value

    def resume_settings(self) -> dict:
        """The settings a resumed run must share with its checkpoint (see ``data/resume_settings.py``)."""
        values = {name: getattr(self.cfg, name, None) for name in RESUME_SETTINGS}
        values.update(languages=",".join(self.languages), train_subset=self.train_subset_name)
        return values

    def _check_resume(self) -> None:
        """Before any data is read: the weights the run starts from must be of DATA's dictionary, a resumed
        run must keep its data settings, and a finished one stops (in that order: a checkpoint that does
        not belong to this run is refused, not called finished)."""
        root = _root_config(self.cfg)
        if root is None or "checkpoint" not in root:
            return
        shard = shard_suffix(root.get("distributed_training"))
        self._check_start_weights(root.checkpoint, shard)
        path = resumed_checkpoint(root.checkpoint, shard)
        records = read_records(path) if path is not None else None
        if records is None:
            return
        if not self.cfg.reset_data_settings:
            check_resume_settings(path, records, self.resume_settings(), self.state.state_dict[DICTIONARY_HASH_KEY])
        if not root.checkpoint.get("reset_optimizer", False) and "optimization" in root:
            stop_if_finished(path, records, root.optimization.max_update)

    def _check_start_weights(self, checkpoint_cfg, shard: str) -> None:
        """Embeddings of another dictionary of the same size load without complaint and train on wrong
        symbols, whatever --reset-* flags or --finetune-from-model brought them in."""
        start = loaded_checkpoint(checkpoint_cfg, shard)
        state = read_state(start[0]) if start is not None else None
        if state is None or not isinstance(state.get("model"), dict):
            return
        path, flag = start
        try:
            check_checkpoint_dictionary(state, path, os.path.join(self.data_root, "dict.txt"), data_flag="DATA")
        except BalkdError as err:
            raise BalkdError(f"cannot start from {path} ({flag}): {err}") from None

    # ------------------------------------------------------------------ public data interface
    def sample_address(self, sample) -> SampleAddress:
        """Split, mask epoch, languages and per-language sample ids of a batch (the teacher cache's address)."""
        return SampleAddress.of(sample)

    def language_datasets(self, split: str, epoch: int) -> List[Tuple[int, object]]:
        """``[(lang_id, dataset)]``: the masked per-language datasets of ``split`` at ``epoch``.

        Sample ``i`` of a language's dataset is the one a batch addresses with ``sample_ids == i``.
        """
        if split not in self._parts:  # combined as fairseq-train combines: the training subset only
            self.load_dataset(split, epoch=epoch, combine=self.base_split(split) == self.train_subset_name)
        self.dataset(split).set_epoch(epoch)  # what fairseq's iterator does before a batch is drawn
        return list(self._parts[split])

    def data_fingerprint(self, splits) -> dict:
        """Languages, data files, masking, balancing and seed that decide the samples of the base ``splits``."""
        return masking_fingerprint(self.cfg, self.data_root, self._languages_for_data(), splits)

    def base_split(self, subset: str) -> str:
        """'valid_de' -> 'valid' (per-language subsets share their base split's masks)."""
        return self._split_languages(subset)[0]

    # ------------------------------------------------------------------ data loading
    def _languages_for_data(self) -> List[str]:
        if not self.languages:  # built for inference from a checkpoint that recorded none
            self.languages = resolve_languages(self.data_root, self.cfg.languages)
        return self.languages

    def language_blocks(self, split: str, lang: str, combine: bool = False):
        """Token blocks of one language and split, with <s> prepended (cached per process)."""
        key = (split, lang, bool(combine))
        if key not in self._blocks:
            self._blocks[key] = language_blocks(self.data_root, lang, split, self.source_dictionary, self.cfg, combine)
        return self._blocks[key]

    def load_dataset(self, split, epoch=1, combine=False, **kwargs):
        base_split, languages = self._split_languages(split)
        lang_ids = [self.languages.index(lang) for lang in languages]
        blocks = [self.language_blocks(base_split, lang, combine) for lang in languages]
        balanced = base_split == self.train_subset_name and self.cfg.balance != "none"
        if balanced:
            blocks = self._balanced(blocks, languages, epoch)
        parts = [self._with_masks_and_lang(ds, lang_id, base_split) for ds, lang_id in zip(blocks, lang_ids)]
        dataset = ConcatDataset(parts)
        sample_langs = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in zip(lang_ids, parts)])
        self._parts[split] = list(zip(lang_ids, parts))
        self.datasets[split] = self._ordered(dataset, sample_langs, epoch, reshuffle=balanced)
        logger.info(f"{split} (epoch {epoch}): {len(dataset)} samples over {len(languages)} language(s)")

    def _split_languages(self, split: str):
        """'valid' -> all languages; 'valid_de' -> just de."""
        languages = self._languages_for_data()
        if split in languages:
            raise BalkdError(f"split name {split!r} is a language: per-language splits are named <split>_<lang>, "
                             f"e.g. valid_{split}")
        base, lang = split_and_language(split, languages)
        if lang is None:
            self._refuse_unknown_split_language(split, languages)
        return (base, [lang]) if lang is not None else (split, list(languages))

    def _refuse_unknown_split_language(self, split: str, languages: List[str]) -> None:
        """'valid_xx' with no such split but a 'valid' one: a typo of a language, named as such."""
        base, sep, lang = split.rpartition(SUBSET_LANGUAGE_SEPARATOR)
        first = os.path.join(self.data_root, languages[0])
        if sep and base and not os.path.isfile(os.path.join(first, split + ".idx")) \
                and os.path.isfile(os.path.join(first, base + ".idx")):
            raise BalkdError(f"split {split!r} (--train-subset/--valid-subset): {lang!r} is not one of the languages "
                             f"({','.join(languages)}); per-language splits are named {base}_<lang>")

    def _balanced(self, blocks, languages, epoch):
        sizes = [len(ds) for ds in blocks]
        counts = target_sizes(
            sizes, self.cfg.balance, alpha=self.cfg.sampling_alpha,
            samples_per_language=self.cfg.samples_per_language or None,
        )
        per_epoch = self.cfg.balance_draw == "per_epoch"
        draws = [
            LanguageDraw(lang, position, size, count, int(self.cfg.seed), per_epoch, str(self.cfg.balance))
            for position, (lang, size, count) in enumerate(zip(languages, sizes, counts))
        ]
        return [EpochSubsetDataset(ds, draw, epoch) for ds, draw in zip(blocks, draws)]

    def _whole_word_mask(self):
        """SentencePiece's word-start mask over the dictionary (or None; see ``data/word_starts.py``), built
        once: it depends only on the dictionary, and a copy per language would grow with the languages."""
        if not self.cfg.mask_whole_words:
            return None
        if self._word_starts is None:
            self._word_starts = sentencepiece_word_starts(self.source_dictionary, os.path.join(self.data_root, "dict.txt"))
        return self._word_starts

    def _with_masks_and_lang(self, dataset, lang_id: int, base_split: str = ""):
        mask_whole_words = self._whole_word_mask()
        # distinct masks for index i of different languages
        src, tgt = masked_pair(dataset, self.source_dictionary, self.mask_idx, self.cfg, self.cfg.seed + lang_id,
                               mask_whole_words, self._replacement_weights)
        pad = self.source_dictionary.pad()
        target = RightPadDataset(tgt, pad_idx=pad)
        net_input = {"src_tokens": RightPadDataset(src, pad_idx=pad), "src_lengths": NumelDataset(src, reduce=False)}
        if self.cfg.include_target_tokens:
            net_input["target_tokens"] = target
        if self.cfg.include_index:
            net_input["src_id"] = IdDataset()
        return NestedDictionaryDataset(
            {
                "id": IdDataset(),
                "net_input": net_input,
                "target": target,
                "nsentences": NumSamplesDataset(),
                "ntokens": NumelDataset(src, reduce=True),
                "lang_id": RawLabelDataset(np.full(len(src), lang_id, dtype=np.int64)),
                "mask_origin": MaskOriginDataset(base_split),  # (split, epoch): the teacher cache's address
            },
            sizes=[src.sizes],
        )

    def get_batch_iterator(self, dataset, **kwargs):
        split = next((name for name, loaded in self.datasets.items() if loaded is dataset), None)
        # fairseq skips the training split's blocks longer than --max-tokens and asserts on the other splits' (their
        # filter is by --tokens-per-sample only, whatever --skip-invalid-size-inputs-valid-test): both mean a
        # --max-tokens below the block length
        training = split in (None, self.train_subset_name)
        flag = "--max-tokens" if training else "--max-tokens-valid (default: --max-tokens)"
        check_blocks_fit(dataset, split or "given", kwargs.get("max_tokens"), flag)
        if not training:  # fairseq would drop the last len % --required-batch-size-multiple blocks unscored
            kwargs["required_batch_size_multiple"] = 1
        iterator = super().get_batch_iterator(dataset, **kwargs)
        if split is not None and hasattr(iterator, "frozen_batches"):  # (fairseq batches it next anyway)
            check_split_has_batches(iterator.frozen_batches, split, self._split_languages(split)[1], len(dataset),
                                    kwargs.get("required_batch_size_multiple", 1), kwargs.get("max_tokens"),
                                    kwargs.get("max_sentences"))
        if self.cfg.language_run_batches > 1 and isinstance(dataset, LanguageBatchedDataset):
            return LanguageRunBatchIterator.from_iterator(iterator, dataset.sample_langs, self.cfg.language_run_batches)
        return iterator

    def _ordered(self, dataset, sample_langs, epoch, reshuffle: bool):
        if self.cfg.batch_by_language:
            return LanguageBatchedDataset(dataset, self.cfg.seed, epoch, reshuffle, sample_langs=sample_langs)
        return EpochShuffledDataset(dataset, self.cfg.seed, epoch, reshuffle)

    # ------------------------------------------------------------------ soft labels (teachers)
    def build_soft_label_source(self):
        """The soft labels the flags ask for (``--teacher-cache`` or ``--teachers``), checked, with their
        teacher manifest recorded in the task state (hence in every checkpoint)."""
        if self.cfg.teacher_cache:
            from ..soft_labels.cache import TeacherCache

            source = TeacherCache.open(self.cfg.teacher_cache, self)
            self._check_cached_epochs(source.epochs.get(self.train_subset_name) or [])
            logger.info(f"soft labels from the teacher cache {self.cfg.teacher_cache}; teachers are not loaded")
        elif self.cfg.teachers:
            from ..soft_labels.online import TeacherSet

            source = TeacherSet.from_task(self)
        else:
            raise BalkdError("soft labels need --teachers (teacher checkpoints) or --teacher-cache (a balkd-cache-teachers directory)")
        record_manifest(self.state, source.manifest())
        return source

    def _check_cached_epochs(self, cached: List[int]) -> None:
        """A --max-epoch past the cache would stop the run at the first epoch it lacks: refuse it before training."""
        from ..task_run import fairseq_run_config

        run = fairseq_run_config()
        max_epoch = int(getattr(getattr(run, "optimization", None), "max_epoch", 0) or 0)
        if cached and max_epoch > max(cached):
            raise BalkdError(f"--max-epoch {max_epoch}: --teacher-cache {self.cfg.teacher_cache} holds train epochs "
                             f"{min(cached)}..{max(cached)}; rebuild it with --max-epoch {max_epoch} or train for "
                             f"--max-epoch {max(cached)}")

    def reduce_metrics(self, logging_outputs, criterion):
        super().reduce_metrics(logging_outputs, criterion)
        # fairseq's criterion hook is a static method: per-language metrics need the criterion's language names
        reduce_per_language = getattr(criterion, "reduce_per_language_metrics", None)
        if reduce_per_language is not None:
            reduce_per_language(logging_outputs)

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
