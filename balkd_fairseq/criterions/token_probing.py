"""Token-classification cross-entropy for probes (``--criterion token_probing``).

Targets hold a label id on each word's first subword and ``-100`` (ignored) everywhere else.
A gold label the probe has no output for (seen only in the evaluation data) is counted as a
wrong prediction and left out of the loss.
"""
import math
from dataclasses import dataclass

import torch.nn.functional as F
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import FairseqDataclass
from fairseq.logging import metrics

from ..data.subword_alignment import IGNORE_INDEX


@dataclass
class TokenProbingCriterionConfig(FairseqDataclass):
    pass


@register_criterion("token_probing", dataclass=TokenProbingCriterionConfig)
class TokenProbingCriterion(FairseqCriterion):
    def forward(self, model, sample, reduce=True):
        logits = model(**sample["net_input"])  # (B, L, num_labels)
        target = model.get_targets(sample, logits)
        labelled = target.ne(IGNORE_INDEX)
        logits, gold = logits[labelled], target[labelled]
        known = gold < logits.size(-1)
        loss = F.cross_entropy(logits[known], gold[known], reduction="sum")
        ncorrect = (logits.argmax(-1) == gold).sum()
        sample_size = int(known.sum())
        logging_output = {
            "loss": loss.data,
            "ncorrect": ncorrect.data,
            "nlabelled": int(labelled.sum()),
            "ntokens": sample["ntokens"],
            "nsentences": sample["nsentences"],
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        loss_sum = sum(log.get("loss", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        ncorrect = sum(log.get("ncorrect", 0) for log in logging_outputs)
        nlabelled = sum(log.get("nlabelled", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss_sum / max(sample_size, 1) / math.log(2), sample_size, round=3)
        metrics.log_scalar("accuracy", 100.0 * ncorrect / max(nlabelled, 1), nlabelled, round=2)

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
