"""balkd-fairseq: balanced multilingual masked LMs by multi-teacher knowledge distillation.

``fairseq-train --user-dir balkd_fairseq`` imports this package before fairseq builds anything;
importing it registers the plugin's tasks, criteria and models and makes fairseq checkpoints
loadable under torch's ``weights_only`` default.
"""
from .atomic_checkpoints import make_checkpoint_copies_atomic
from .checkpoint_compat import allow_fairseq_checkpoints
from .errors import BalkdError, install_excepthook

allow_fairseq_checkpoints()
make_checkpoint_copies_atomic()  # a kill while saving never truncates checkpoint_last.pt
install_excepthook()

from . import criterions, tasks  # noqa: E402,F401  (registration side effects)

__version__ = "0.1.0"
__all__ = ["BalkdError", "allow_fairseq_checkpoints"]
