"""Differential privacy of what a domain node uploads, and measured privacy.

- :mod:`~silorec.privacy.accounting`: ε of Gaussian releases composed (Opacus's RDP
  accountant) and noise calibration for a target ε;
- :mod:`~silorec.privacy.dp_sgd`: Poisson sampling, per-example clipping and noise;
- :mod:`~silorec.privacy.gaussian`: the Gaussian mechanism on a task vector;
- :mod:`~silorec.privacy.ledger`: a domain's releases on disk, and its hard budget;
- :mod:`~silorec.privacy.membership`: the loss-based membership-inference attack.

No Flower, no interaction data: the node decides what to apply these to.
"""

from silorec.privacy.accounting import (
    GaussianSteps,
    PrivacyAccountingError,
    calibrate_noise_multiplier,
    epsilon,
)
from silorec.privacy.dp_sgd import DpSgdSchedule
from silorec.privacy.gaussian import gaussian_release_steps, gaussian_task_vector_release
from silorec.privacy.ledger import (
    LedgerError,
    PrivacyBudgetExceeded,
    PrivacyLedger,
    Release,
    ledger_path,
)
from silorec.privacy.membership import MembershipAudit, loss_attack, membership_split, roc_auc

__all__ = [
    "DpSgdSchedule",
    "GaussianSteps",
    "LedgerError",
    "MembershipAudit",
    "PrivacyAccountingError",
    "PrivacyBudgetExceeded",
    "PrivacyLedger",
    "Release",
    "calibrate_noise_multiplier",
    "epsilon",
    "gaussian_release_steps",
    "gaussian_task_vector_release",
    "ledger_path",
    "loss_attack",
    "membership_split",
    "roc_auc",
]
