"""balkd-fairseq: balanced multilingual masked LMs by multi-teacher knowledge distillation.

``fairseq-train --user-dir balkd_fairseq`` imports this package before fairseq builds anything.
Importing it registers the plugin's tasks, criteria and models and makes fairseq checkpoints
loadable under torch's ``weights_only`` default; nothing else in the process changes. What a run
needs beyond that (one-line errors, atomic checkpoint copies, the save-directory lock) is set up
by the plugin's tasks when they run (:mod:`balkd_fairseq.task_run`) and by the ``balkd-*`` commands.
"""
from .checkpoint_compat import allow_fairseq_checkpoints
from .errors import BalkdError
from .version import __version__

allow_fairseq_checkpoints()

from . import criterions, tasks  # noqa: E402,F401  (registration side effects)

__all__ = ["BalkdError", "allow_fairseq_checkpoints", "__version__"]
