"""A domain node's privacy: who trains, how much noise each upload gets, what the
ledger says, and how well a membership-inference attack does on the upload.

Noise calibrated to ``privacy.target_epsilon`` covers the whole run: the node knows
from the scenario how many times it will be asked to train (θ0's FedAvg warm-up
rounds, the fine-tuning, the FedAvg baseline's rounds) and calibrates one noise
multiplier so that all of them together reach the target. The ledger counts what
actually happened, so a server that asks for more uploads than planned meets the
budget, not a silently larger ε.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from silorec.data.domain import DomainData
from silorec.models import TextSeqRec, Weights
from silorec.models.text_seq import PAD
from silorec.privacy import (
    DpSgdSchedule,
    GaussianSteps,
    MembershipAudit,
    PrivacyLedger,
    calibrate_noise_multiplier,
    gaussian_release_steps,
    gaussian_task_vector_release,
    loss_attack,
    membership_split,
)
from silorec.results.schema import (
    MIA_AUC,
    MIA_MEMBERS,
    MIA_NON_MEMBERS,
    PRIVACY_DELTA,
    PRIVACY_EPSILON,
    PRIVACY_EPSILON_UNBOUNDED,
    PRIVACY_NOISE_MULTIPLIER,
    PRIVACY_RELEASES,
)
from silorec.scenario.schema import Scenario
from silorec.training.dp_finetune import dp_schedule
from silorec.training.finetune import per_example_losses, training_examples

#: Train-report scalars a private upload still carries: counts and timings. The
#: number of training examples is public in DP-SGD (the sampling rate depends on
#: it); the training loss and validation scores are computed on the data without
#: noise, so they are withheld.
PUBLIC_TRAIN_SCALARS = frozenset(
    {
        "epochs_run",
        "train_seconds",
        "eval_seconds",
        "n_train_sequences",
        "sequences_per_second",
        "train_seed",
    }
)


@dataclass(frozen=True)
class ReleasePlan:
    """How one upload is privatised, known before training starts."""

    mechanism: str
    noise_multiplier: float
    gaussian: GaussianSteps
    schedule: DpSgdSchedule | None = None  # DP-SGD only


def planned_training(scenario: Scenario) -> tuple[int, int]:
    """``(uploads, epochs)`` a merged domain is asked for in one run of ``scenario``."""
    uploads, epochs = 1, scenario.train.epochs
    if scenario.base.init == "fedavg":
        uploads += scenario.base.fedavg_rounds
        epochs += scenario.base.fedavg_rounds * scenario.base.fedavg_local_epochs
    uploads += scenario.baselines.fedavg_rounds
    epochs += scenario.baselines.fedavg_rounds * scenario.baselines.fedavg_local_epochs
    return uploads, epochs


def default_delta(n_users: int) -> float:
    """δ when the scenario names none: at most 1e-5 and at most 0.1 / n, so that the
    chance of a total failure of privacy stays far below one user's worth."""
    return min(1e-5, 0.1 / max(n_users, 1))


def ledger_scalars(ledger: PrivacyLedger) -> dict[str, float]:
    """The ledger's total ε at δ and its number of releases, as reply metrics."""
    total = ledger.epsilon()
    out = {PRIVACY_DELTA: ledger.delta, PRIVACY_RELEASES: float(len(ledger.releases))}
    if math.isinf(total):
        out[PRIVACY_EPSILON_UNBOUNDED] = 1.0
    else:
        out[PRIVACY_EPSILON] = total
    return out


class NodePrivacy:
    """The privacy side of one domain node's training."""

    def __init__(self, scenario: Scenario, domain: DomainData) -> None:
        self.scenario = scenario
        self.settings = scenario.privacy
        self.domain = domain
        self._calibrated: dict[tuple[float, int], float] = {}

    @cached_property
    def delta(self) -> float:
        """δ: the scenario's, or min(1e-5, 0.1 / the domain's number of users)."""
        return self.settings.delta or default_delta(self.domain.n_users)

    @cached_property
    def membership(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(members, non_members)`` when the attack is measured, else None. Only
        users with a training example (2+ training items) are candidates."""
        if not self.settings.membership_inference:
            return None
        train_lengths = self.domain.lengths - self.domain.holdout
        candidates = np.flatnonzero(train_lengths >= 2)
        return membership_split(candidates, self.settings.mia_holdout_fraction, self.scenario.seed)

    @property
    def training_users(self) -> np.ndarray | None:
        """Users training may see (None: all of them)."""
        return None if self.membership is None else self.membership[0]

    def plan(self, epochs: int) -> ReleasePlan:
        """How an upload after ``epochs`` epochs of training is privatised."""
        mechanism = self.settings.mechanism
        uploads, planned_epochs = planned_training(self.scenario)
        if mechanism == "none":
            return ReleasePlan(mechanism, 0.0, GaussianSteps(0.0, 1.0, 1))
        if mechanism == "gaussian":
            sigma = self._noise_multiplier(1.0, uploads)
            return ReleasePlan(mechanism, sigma, gaussian_release_steps(sigma))
        schedule = dp_schedule(
            self.domain,
            self.scenario.model.max_len,
            self.scenario.train.batch_size,
            self.training_users,
        )
        sigma = self._noise_multiplier(
            schedule.sample_rate, schedule.steps_per_epoch * planned_epochs
        )
        return ReleasePlan(mechanism, sigma, schedule.gaussian_steps(sigma, epochs), schedule)

    def _noise_multiplier(self, sample_rate: float, planned_steps: int) -> float:
        """The scenario's noise multiplier, or the one calibrated to its target ε over
        the run's planned steps (calibrated once per rate and step count)."""
        if self.settings.noise_multiplier is not None:
            return self.settings.noise_multiplier
        assert self.settings.target_epsilon is not None  # the schema requires one of them
        key = (sample_rate, planned_steps)
        if key not in self._calibrated:
            self._calibrated[key] = calibrate_noise_multiplier(
                self.settings.target_epsilon, self.delta, sample_rate, planned_steps
            )
        return self._calibrated[key]

    def release(self, plan: ReleasePlan, start: Weights, trained: Weights) -> Weights:
        """The weights to upload: the Gaussian mechanism's noisy ones, or ``trained``
        (DP-SGD's noise is already in them; without privacy there is none)."""
        if plan.mechanism != "gaussian":
            return trained
        return gaussian_task_vector_release(
            start,
            trained,
            clip_norm=self.settings.clip_norm,
            noise_multiplier=plan.noise_multiplier,
        )

    def reply_scalars(
        self, plan: ReleasePlan, train_scalars: dict[str, float], ledger: PrivacyLedger
    ) -> dict[str, float]:
        """Train metrics for the reply: only public ones under DP, plus the ledger."""
        if plan.mechanism == "none":
            out = dict(train_scalars)
        else:
            out = {k: v for k, v in train_scalars.items() if k in PUBLIC_TRAIN_SCALARS}
        out[PRIVACY_NOISE_MULTIPLIER] = plan.noise_multiplier
        out.update(ledger_scalars(ledger))
        return out

    def membership_audit(
        self, model: TextSeqRec, text_embeddings: torch.Tensor, batch_size: int
    ) -> MembershipAudit:
        """The loss attack on ``model`` (the upload): members against non-members."""
        if self.membership is None:
            raise ValueError("membership inference is off in this scenario's [privacy]")
        members, non_members = self.membership
        return loss_attack(
            user_losses(model, self.domain, text_embeddings, members, batch_size),
            user_losses(model, self.domain, text_embeddings, non_members, batch_size),
        )


def audit_scalars(audit: MembershipAudit) -> dict[str, float]:
    """The attack's AUC and group sizes as reply metrics."""
    return {
        MIA_AUC: audit.auc,
        MIA_MEMBERS: float(audit.n_members),
        MIA_NON_MEMBERS: float(audit.n_non_members),
    }


@torch.no_grad()
def user_losses(
    model: TextSeqRec,
    domain: DomainData,
    text_embeddings: torch.Tensor,
    users: np.ndarray,
    batch_size: int,
) -> np.ndarray:
    """Each user's mean next-item loss on their training sequence (the sequence
    training sees), in ``users`` order; every user must have 2+ training items."""
    inputs_np, targets_np = training_examples(domain, model.settings.max_len, users)
    if len(inputs_np) != len(users):
        raise ValueError(f"domain '{domain.name}': some users have no training example")
    was_training = model.training
    model.eval()
    try:
        item_repr = model.encode_items(text_embeddings)
        device = text_embeddings.device
        lengths = (inputs_np != PAD).sum(axis=1)
        order = np.argsort(lengths, kind="stable")
        losses = np.empty(len(users), dtype=np.float64)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(int(lengths[rows].max()), 1)
            inputs = torch.from_numpy(inputs_np[rows, -width:]).to(device)
            targets = torch.from_numpy(targets_np[rows, -width:]).to(device)
            losses[rows] = per_example_losses(model, item_repr, inputs, targets).cpu().numpy()
    finally:
        model.train(was_training)
    return losses
