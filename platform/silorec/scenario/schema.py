"""Pydantic models of a scenario: the single source of truth for configuration.

A scenario file (TOML) describes a whole federation: which domains take part, where
each node finds its data and how it is prepared, the model, local training, the base
model θ0, the merge methods and the evaluation protocol. Every field is validated
before anything runs; unknown keys are errors so that a typo cannot silently fall
back to a default.

The schema is imported by both sides of the federation. It holds configuration only:
it never reads interaction data (that is :mod:`silorec.data`, node side only).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from silorec.text.minilm import MINILM_DIM, MINILM_LAYERS, MINILM_MAX_TOKENS

DOMAIN_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,39}$"


class StrictModel(BaseModel):
    """Base for every scenario section: unknown keys are rejected, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


# ---------------------------------------------------------------------------
# Data sources (one per domain). Node side reads them; the server only sees names.
# ---------------------------------------------------------------------------


class SyntheticSource(StrictModel):
    """A generated domain. All domains of one ``world_seed`` share latent structure
    (topics, topic transitions), so that what one domain learns helps another."""

    kind: Literal["synthetic"] = "synthetic"
    world_seed: int = Field(0, description="Seed of the latent world shared by domains.")
    n_topics: int = Field(8, ge=2, le=64)
    flavour: str | None = Field(
        None,
        description="Vocabulary flavour of item titles (e.g. 'books', 'toys'); "
        "defaults to one derived from the domain name.",
    )
    n_users: int = Field(400, ge=10)
    n_items: int = Field(200, ge=10)
    mean_length: float = Field(8.0, ge=3.0, le=200.0)
    seed: int = Field(0, description="Seed of this domain's own users and items.")


class MergeRecSource(StrictModel):
    """A domain in the MergeRec release format: a folder (or ``.tar.gz``) with
    ``train/val/test/umap/smap/meta_data.json``."""

    kind: Literal["mergerec"] = "mergerec"
    path: str = Field(
        ...,
        description="Folder or .tar.gz of the domain. Relative paths resolve against "
        "`data.root` (or the environment variable it names).",
    )


class GenericSource(StrictModel):
    """The documented generic format users produce from their own logs: an
    interactions table (user, item, timestamp) and an items table (item id plus text
    columns), each CSV or Parquet."""

    kind: Literal["generic"] = "generic"
    path: str = Field(
        ".",
        description="Folder holding the two tables; relative to `data.root`.",
    )
    interactions: str = "interactions.csv"
    items: str = "items.csv"
    user_column: str = "user_id"
    item_column: str = "item_id"
    timestamp_column: str = "timestamp"
    text_columns: list[str] = Field(default_factory=lambda: ["title", "brand", "category"])


class AmazonRawSource(StrictModel):
    """Raw Amazon review files as published by UCSD (2014 or 2018 line formats,
    plain or gzip): one reviews file and one metadata file."""

    kind: Literal["amazon-raw"] = "amazon-raw"
    reviews: str = Field(..., description="Reviews file (JSON lines; .gz allowed).")
    metadata: str = Field(..., description="Metadata file (JSON or Python-literal lines).")
    min_rating: float | None = Field(
        None, description="Keep only reviews with at least this rating."
    )


DataSource = Annotated[
    SyntheticSource | MergeRecSource | GenericSource | AmazonRawSource,
    Field(discriminator="kind"),
]


class Subsample(StrictModel):
    """Deterministic reduction of a domain so real data trains in minutes on 2 cores.

    Applied in this order: keep the ``top_items`` most frequent items, then the
    ``k_core`` filter (iterated until every user and item has at least k
    interactions), then at most ``max_users`` users drawn with ``seed``.
    """

    top_items: int | None = Field(None, ge=1)
    k_core: int | None = Field(None, ge=1)
    max_users: int | None = Field(None, ge=1)
    max_length: int | None = Field(
        None, ge=3, description="Keep only each user's most recent interactions."
    )
    seed: int = 0


class DomainSpec(StrictModel):
    """One domain: one node of the federation."""

    name: str = Field(..., pattern=DOMAIN_NAME_PATTERN)
    unseen: bool = Field(
        False,
        description="Unseen domains contribute nothing to the merge (no training, no "
        "upload) but are evaluated: zero-shot transfer.",
    )
    data: DataSource
    subsample: Subsample = Field(default_factory=Subsample)


class DataSettings(StrictModel):
    """Where relative data paths resolve and where prepared data is cached."""

    root: str | None = Field(None, description="Folder that relative data paths resolve against.")
    root_env: str | None = Field(
        None,
        description="Environment variable naming the data root; wins over `root` when set.",
    )
    how_to_get: str | None = Field(
        None, description="Shown to the user when the data cannot be found."
    )
    cache_dir: str | None = Field(
        None,
        description="Prepared-data and text-embedding cache; default "
        "$SILOREC_CACHE_DIR or ~/.cache/silorec.",
    )


# ---------------------------------------------------------------------------
# Text, model, training.
# ---------------------------------------------------------------------------


class TextSettings(StrictModel):
    """Item text features: computed once per catalogue by a frozen encoder."""

    encoder: Literal["minilm", "hashing"] = Field(
        "minilm",
        description="'minilm' is the pretrained all-MiniLM-L6-v2 (every real scenario); "
        "'hashing' is a tiny deterministic encoder for tests only.",
    )
    fields: list[str] = Field(default_factory=lambda: ["title", "brand", "category"])
    batch_size: int = Field(128, ge=1)
    hashing_dim: int = Field(384, ge=8, description="Output size of the hashing encoder.")


#: Fields that only one model kind uses; giving another kind a non-default value is an
#: error rather than silently ignored.
TEXT_SEQ_FIELDS = ("layers", "heads", "adaptor", "init")
TEXT_ENCODER_FIELDS = ("encoder_layers", "max_item_tokens", "max_sequence_tokens", "negatives")


class ModelSettings(StrictModel):
    """The text-based sequential recommender. Every trainable parameter is
    domain-agnostic (no item-ID tables), so domain models can be merged and serve
    unseen domains.

    Two kinds share ``dim``, ``max_len``, ``dropout`` and ``temperature``:
    ``text-seq``, a small adaptor + causal transformer over frozen text embeddings
    (fast on CPU), and ``text-encoder``, the paper's backbone family: the text encoder
    (all-MiniLM-L6-v2) itself fine-tuned end to end, a history being the texts of its
    items, most recent first (as BLaIR in MergeRec).
    """

    kind: Literal["text-seq", "text-encoder"] = Field(
        "text-seq",
        description="'text-seq': adaptor + transformer over frozen text embeddings; "
        "'text-encoder': fine-tunes all-MiniLM-L6-v2 on item and history texts (much "
        "slower: a CPU copes with a few hundred items and users per domain).",
    )
    dim: int = Field(
        64, ge=8, description="Item and history vector size (text-encoder: must be 384)."
    )
    layers: int = Field(2, ge=1, description="text-seq: transformer blocks.")
    heads: int = Field(2, ge=1, description="text-seq: attention heads.")
    max_len: int = Field(50, ge=2, description="Most recent history items a model reads.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    temperature: float = Field(0.05, gt=0.0)
    adaptor: Literal["linear", "mlp"] = Field(
        "linear",
        description="text-seq: 'linear' keeps the text encoder's similarity structure "
        "in the untrained model (θ0 already ranks by text similarity) and trained better "
        "than 'mlp' on Amazon Beauty.",
    )

    init: Literal["random", "identity"] = Field(
        "random",
        description="text-seq: 'identity': an untrained model that already ranks by "
        "text similarity to the last item (orthogonal adaptor, transformer blocks that "
        "start as the identity, no position signal), like a pretrained encoder's θ0; "
        "'random': the usual initialisation. (text-encoder: θ0 is always the "
        "pretrained encoder.)",
    )
    encoder_layers: int = Field(
        6,
        ge=1,
        le=MINILM_LAYERS,
        description="text-encoder: keep the first N of MiniLM's 6 layers (fewer train "
        "and evaluate proportionally faster on CPU).",
    )
    max_item_tokens: int = Field(
        32, ge=4, le=MINILM_MAX_TOKENS, description="text-encoder: tokens of one item's text."
    )
    max_sequence_tokens: int = Field(
        128,
        ge=4,
        le=MINILM_MAX_TOKENS,
        description="text-encoder: tokens of a history (its items' texts, most recent "
        "first, cut here).",
    )
    negatives: int = Field(
        64,
        ge=1,
        description="text-encoder training: random items of the domain added to each "
        "batch's targets as the candidates of a sampled softmax.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ModelSettings:
        if self.dim % self.heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by heads ({self.heads})")
        other_kind, other_fields = (
            ("text-encoder", TEXT_ENCODER_FIELDS)
            if self.kind == "text-seq"
            else ("text-seq", TEXT_SEQ_FIELDS)
        )
        for name in other_fields:
            if getattr(self, name) != type(self).model_fields[name].default:
                raise ValueError(
                    f"model.{name} is a setting of model.kind '{other_kind}', not of '{self.kind}'"
                )
        if self.kind == "text-encoder":
            if self.dim != MINILM_DIM:
                raise ValueError(
                    f"model.dim ({self.dim}) must equal the text encoder's hidden size "
                    f"({MINILM_DIM}, all-MiniLM-L6-v2) for model.kind 'text-encoder'"
                )
            if self.max_sequence_tokens < self.max_item_tokens:
                raise ValueError(
                    f"model.max_sequence_tokens ({self.max_sequence_tokens}) must be at "
                    f"least model.max_item_tokens ({self.max_item_tokens}): a one-item "
                    "history must read its item's whole text"
                )
        return self


class TrainSettings(StrictModel):
    """Local fine-tuning on a domain node."""

    epochs: int = Field(30, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    patience: int = Field(
        3, ge=1, description="Epochs without a better validation NDCG@10 before stopping."
    )
    max_valid_users: int | None = Field(
        2000,
        ge=1,
        description="Validation users (seeded sample) used for early stopping; None = all.",
    )
    seed: int = 0
    threads: int | None = Field(
        None, ge=1, description="torch CPU threads on the node; None = torch default."
    )
    device: str = Field("auto", description="'auto' (GPU when present), 'cpu' or 'cuda'.")
    progress: bool = True
    regime: Literal["full", "lora", "proximal"] = Field(
        "full",
        description="'full': every parameter trains; 'lora': only rank-`lora_rank` deltas "
        "of the linear layers (small, low-rank task vectors); 'proximal': full training "
        "plus `proximal_mu`/2 · ‖θ − θ0‖² (task vectors stay near θ0).",
    )
    lora_rank: int = Field(8, ge=1)
    proximal_mu: float = Field(0.01, ge=0.0)


class BaseSettings(StrictModel):
    """How the common base model θ0 is made before local fine-tuning."""

    init: Literal["seeded", "fedavg"] = Field(
        "seeded",
        description="'seeded': a seeded random initialisation made by the server; "
        "'fedavg': that initialisation followed by `fedavg_rounds` FedAvg rounds.",
    )
    seed: int = 0
    fedavg_rounds: int = Field(2, ge=1)
    fedavg_local_epochs: int = Field(1, ge=1)


class MergeSpec(BaseModel):
    """One merge method and its parameters, e.g. ``{method = "ties", density = 0.2}``.

    The method's own parameter model (in :mod:`silorec.merging`) validates the
    remaining keys, so each method documents and checks its parameters in one place.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    method: str
    label: str | None = Field(None, description="Name in results; default derived.")

    @model_validator(mode="after")
    def _validate_params(self) -> MergeSpec:
        from silorec.merging.registry import get_method  # merging is flwr- and data-free

        method = get_method(self.method)  # raises KeyError-like ValueError naming choices
        method.params_model.model_validate(self.params)
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The method parameters: every key but ``method`` and ``label``."""
        return dict(self.model_extra or {})

    @property
    def display_label(self) -> str:
        """The label used in results: the given one, or the method plus the parameters
        as written, under their canonical names (``scale=0.3`` and ``lambda=0.3`` give
        the same label, so the duplicate check sees them as one merge)."""
        if self.label:
            return self.label
        from silorec.merging.registry import get_method

        params = get_method(self.method).validate_params(self.params)
        given = params.model_dump(by_alias=True, exclude_unset=True)
        if not given:
            return self.method
        inner = ",".join(f"{k}={v}" for k, v in sorted(given.items()))
        return f"{self.method}({inner})"


class EvaluationSettings(StrictModel):
    """One evaluation protocol for every model: full ranking over all items of the
    domain, leave-one-out."""

    ks: list[int] = Field(default_factory=lambda: [5, 10, 20, 50])
    splits: list[Literal["valid", "test"]] = Field(default_factory=lambda: ["valid", "test"])
    exclude_history: bool = Field(
        False,
        description="Mask the user's own history items before ranking (RecBole's "
        "convention). Off by default, as in the MergeRec release.",
    )
    batch_size: int = Field(512, ge=1)
    max_users: int | None = Field(
        None, ge=1, description="Evaluate a seeded sample of users; None = all."
    )
    users_seed: int = Field(
        0,
        description="Seed of that sample. It is not the run's seed: every seed of "
        "`silorec run --seeds` evaluates the same users, so seeds are comparable.",
    )
    sampled_negatives: int | None = Field(
        None,
        ge=1,
        description="Also WeaveRec's sampled protocol: the target ranked among this many "
        "items the user never interacted with (29 in the paper), drawn per user and "
        "split from users_seed (the same for every model); reports sampled_ndcg@1/3/5 "
        "and sampled_mrr beside the full-ranking metrics. None: off.",
    )
    cross_domain_models: int | None = Field(
        4,
        ge=0,
        description="How many other domains' individual models each merged domain "
        "evaluates besides its own, θ0 and the merges: a seeded sample (users_seed), a "
        "different one per domain, so that evaluation grows linearly in the number of "
        "domains. With at most this many + 1 merged domains the cross-domain matrix is "
        "complete. None: every individual model on every domain (the full matrix, N² "
        "evaluations).",
    )
    unseen_source_models: int | None = Field(
        32,
        ge=1,
        description="How many domains' individual models each unseen domain evaluates "
        "(a seeded sample; its best single source is chosen among them on validation). "
        "With up to this many merged domains, all of them. None: all, however many: "
        "beware a node's max-evaluate-models floor (64 by default), which refuses a "
        "request with more models.",
    )

    @field_validator("ks")
    @classmethod
    def _positive_sorted(cls, ks: list[int]) -> list[int]:
        if not ks or any(k < 1 for k in ks):
            raise ValueError("ks must be a non-empty list of positive integers")
        if 10 not in ks:
            raise ValueError("ks must include 10 (early stopping uses NDCG@10)")
        return sorted(set(ks))


class SimulationSettings(StrictModel):
    """Ray resources of a Flower simulation (``silorec simulate``; its flags override):
    how much of the machine, or of a Ray cluster, each simulated domain node claims."""

    cpus_per_node: float | None = Field(
        None,
        gt=0,
        description="CPUs each simulated node claims (Flower's client-resources-num-cpus); "
        "None: Flower's default of 2, one node at a time on a 2-core machine.",
    )
    gpus_per_node: float = Field(
        0.0,
        ge=0,
        description="GPUs each simulated node claims, fractions allowed (0.25: four nodes "
        "share one GPU; client-resources-num-gpus). 0: nodes run on CPU unless "
        "train.device says otherwise.",
    )


class FederationSettings(StrictModel):
    """How the merge server deals with nodes: waiting, timeouts, failures."""

    min_domains: int = Field(
        2, ge=1, description="Fewest fine-tuned domain models needed to merge."
    )
    connect_timeout_s: float = Field(
        120.0, gt=0, description="How long to wait for every domain node to connect."
    )
    describe_timeout_s: float = Field(
        900.0, gt=0, description="Data preparation and text embedding on the nodes."
    )
    train_timeout_s: float = Field(3600.0, gt=0)
    eval_timeout_s: float = Field(1800.0, gt=0)
    node_ids: dict[str, int] = Field(
        default_factory=dict,
        description="Domain -> the Flower node id allowed to serve it (deployment: the id "
        "`flwr supernode register` printed for the domain's key). A node claiming a "
        "bound domain is refused unless it is that node; without a binding, a domain "
        "claimed by two nodes is refused for both (never served by a squatter).",
    )
    max_task_vector_norm_ratio: float | None = Field(
        10.0,
        gt=1.0,
        description="Reject an upload whose task vector (W - θ0) has a norm over this many "
        "times the median of the other domains' (a poisoned or broken model); None: off.",
    )
    clip_task_vector_norm_ratio: float | None = Field(
        3.0,
        gt=0.0,
        description="Before merging, scale each task vector down to at most this many "
        "times the median norm of the accepted ones, so one domain cannot dominate the "
        "merge; None: off.",
    )


class AuditSettings(StrictModel):
    """What each domain node records and checks about everything it sends (the audit
    trail, the fail-closed wire policy and the leakage detectors)."""

    enabled: bool = Field(
        True,
        description="Ignored, kept so that older scenarios still load: the node's guard, "
        "wire policy and audit log are always on, on every engine. Whoever writes the "
        "scenario runs the merge server, and must not be able to switch off a node's "
        "protection.",
    )
    canaries: int = Field(
        4,
        ge=0,
        description="Synthetic canary users planted in each domain's training data: their "
        "sequences and identifiers must never appear in anything a node sends (finding "
        "one is proof that training data is leaving). Their cost on the model is "
        "measured by benchmarks/bench_canaries.py.",
    )
    min_identifier_length: int = Field(
        6,
        ge=3,
        description="Raw user/item identifiers shorter than this are not searched for "
        "in payloads (short strings occur by chance in binary data).",
    )


class PrivacySettings(StrictModel):
    """Differential privacy of what a node uploads, its budget, and measured privacy.

    The unit of privacy is a user: each user is one training example. ε is per domain
    and composes every upload of that domain (see :mod:`silorec.privacy`).
    """

    mechanism: Literal["none", "dp-sgd", "gaussian"] = Field(
        "none",
        description="'dp-sgd': per-example clipping and noise in local training (a fixed "
        "number of epochs, no early stopping); 'gaussian': clip the uploaded task "
        "vector's L2 norm and add Gaussian noise. 'none' uploads without noise: ε = ∞.",
    )
    noise_multiplier: float | None = Field(
        None,
        ge=0.0,
        description="Noise standard deviation over the sensitivity (DP-SGD: over "
        "max_grad_norm; gaussian: over 2 x clip_norm). 0 means no noise (ε = ∞).",
    )
    target_epsilon: float | None = Field(
        None,
        gt=0.0,
        description="Calibrate the noise so that all of a domain's uploads in the run "
        "together reach this ε (instead of noise_multiplier).",
    )
    delta: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="δ; default min(1e-5, 0.1 / the domain's number of users), well under "
        "1/n so that ε means something for every user.",
    )
    max_grad_norm: float = Field(1.0, gt=0.0, description="DP-SGD per-example clipping norm.")
    clip_norm: float = Field(1.0, gt=0.0, description="Gaussian mechanism: task-vector clip norm.")
    budget_epsilon: float | None = Field(
        None,
        gt=0.0,
        description="Hard budget: a node refuses any upload that would take its domain's "
        "total ε (its privacy ledger) over this.",
    )
    membership_inference: bool = Field(
        False,
        description="Hold out non-member users and measure a loss-based "
        "membership-inference attack on each upload (its AUC is reported).",
    )
    mia_holdout_fraction: float = Field(
        0.1,
        gt=0.0,
        lt=0.5,
        description="Share of users kept out of training as non-members for the attack.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> PrivacySettings:
        noise_given = [
            name
            for name in ("noise_multiplier", "target_epsilon")
            if getattr(self, name) is not None
        ]
        if self.mechanism == "none":
            if noise_given:
                raise ValueError(
                    f"privacy.{noise_given[0]} needs a mechanism ('dp-sgd' or 'gaussian'); "
                    "privacy.mechanism is 'none'"
                )
            if self.budget_epsilon is not None:
                raise ValueError(
                    "privacy.budget_epsilon needs a mechanism ('dp-sgd' or 'gaussian'): "
                    "without noise every upload has ε = ∞ and would be refused"
                )
            return self
        if len(noise_given) != 1:
            raise ValueError(
                f"privacy.mechanism '{self.mechanism}' needs exactly one of "
                "noise_multiplier and target_epsilon"
            )
        if (
            self.target_epsilon is not None
            and self.budget_epsilon is not None
            and self.target_epsilon > self.budget_epsilon
        ):
            raise ValueError(
                f"privacy.target_epsilon ({self.target_epsilon:g}) exceeds "
                f"privacy.budget_epsilon ({self.budget_epsilon:g}): the last upload "
                "would be refused"
            )
        return self


class BaselineSettings(StrictModel):
    """Reference models evaluated next to the merges."""

    fedavg_rounds: int = Field(
        0,
        ge=0,
        description="Train a FedAvg model for this many rounds from θ0 (0: no FedAvg "
        "baseline); its bytes moved are reported.",
    )
    fedavg_local_epochs: int = Field(
        1, ge=1, description="Local epochs per FedAvg round on each merged domain."
    )
    joint: bool = Field(
        False,
        description="Joint oracle: one model trained on the pooled data of the merged "
        "domains. Breaks isolation, so only the in-process engine runs it.",
    )


def _uniform_fusion() -> list[MergeSpec]:
    return [MergeSpec(method="average", label="uniform")]


class WeaveSettings(StrictModel):
    """WeaveRec, data-isolated: for each target domain T and each of its sources S a
    hybrid LoRA adapter is trained by visits that alternate between S's node and T's
    node (only the adapter moves, through the server), then T's own adapter and its
    hybrids are fused by merging (see :mod:`silorec.weaving`). Off while ``targets``
    is empty."""

    targets: list[str] = Field(
        default_factory=list, description="Target domains (merged, i.e. not unseen)."
    )
    sources: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Sources per target; a target not listed takes every other merged "
        "domain as its sources.",
    )
    rank: int = Field(8, ge=1, description="LoRA rank r of every adapter.")
    alpha: float | None = Field(None, gt=0.0, description="LoRA α: ΔW = (α / r)·B·A. None: α = r.")
    layers: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="Glob patterns over the model's linear layer names that carry an "
        "adapter (\"*\": every nn.Linear, e.g. 'blocks.*.attention.*').",
    )
    rounds: int = Field(2, ge=1, description="Weaving rounds R: each visits S then T.")
    epochs_per_visit: int = Field(1, ge=1, description="Local epochs k of one visit.")
    schedule: Literal["source-first", "target-first"] = Field(
        "source-first", description="Which node each weaving round visits first."
    )
    hybrid_start: Literal["fresh", "target"] = Field(
        "target",
        description="Where a hybrid starts: the target's own trained adapter (default: "
        "measured best, docs/results.md), or a fresh adapter (B = 0) as WeaveRec's "
        "released recipe.",
    )
    finish_on_target: bool = Field(
        True,
        description="After the R rounds, one more visit to the target: up to "
        "adapter_epochs with early stopping on the target's validation users (default: "
        "measured best; false: the plain alternation).",
    )
    adapter_epochs: int | None = Field(
        None,
        ge=1,
        description="Most epochs of each domain's own adapter (target-only and "
        "source-only baselines, early stopping on validation); None: train.epochs.",
    )
    fusion: list[MergeSpec] = Field(
        default_factory=_uniform_fusion,
        min_length=1,
        description="How {target adapter, hybrids} are fused, as [[merges]] entries "
        "over the adapted models (exact on ΔW): 'average' is WeaveRec's released "
        "uniform merge.",
    )
    pooled_oracles: bool = Field(
        False,
        description="Oracles that break isolation (in-process engine only): one adapter "
        "on every merged domain's pooled data, and pooled WeaveRec (hybrids trained on "
        "pooled target + source data, the released recipe).",
    )
    fedavg_rounds: int = Field(
        0, ge=0, description="Baseline: FedAvg of adapters over every merged domain "
        "for this many rounds of epochs_per_visit (0: off)."
    )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return bool(self.targets)


class OutputSettings(StrictModel):
    """What the run writes besides results.json/results.csv/report.md."""

    plots: bool = True
    save_models: bool = Field(
        True,
        description="Save θ0, every individual model and every merge in models/ "
        "(numpy .npz, a few hundred kB each) for serving or later analysis.",
    )


class Scenario(StrictModel):
    """A whole federation: domains, data, model, training, base, merges, evaluation."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    description: str = ""
    seed: int = Field(0, description="Seed of the run (merges with randomness, samples).")
    data: DataSettings = Field(default_factory=DataSettings)
    text: TextSettings = Field(default_factory=TextSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    base: BaseSettings = Field(default_factory=BaseSettings)
    merges: list[MergeSpec] = Field(default_factory=list)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    federation: FederationSettings = Field(default_factory=FederationSettings)
    simulation: SimulationSettings = Field(default_factory=SimulationSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)
    baselines: BaselineSettings = Field(default_factory=BaselineSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    weave: WeaveSettings = Field(default_factory=WeaveSettings)
    domains: list[DomainSpec] = Field(..., min_length=1)

    @model_validator(mode="after")
    def _check_domains(self) -> Scenario:
        names = [d.name for d in self.domains]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"domain names must be unique; repeated: {', '.join(dupes)}")
        merged = [d for d in self.domains if not d.unseen]
        if not merged:
            raise ValueError("at least one domain must not be `unseen` (nothing to merge)")
        if self.federation.min_domains > len(merged):
            raise ValueError(
                f"federation.min_domains ({self.federation.min_domains}) exceeds the "
                f"number of merged (not unseen) domains ({len(merged)})"
            )
        if self.privacy.mechanism == "dp-sgd" and self.train.regime != "full":
            raise ValueError(
                f"train.regime '{self.train.regime}' cannot be combined with DP-SGD "
                "(privacy.mechanism 'dp-sgd' clips and noises every parameter's gradient)"
            )
        labels = [m.display_label for m in self.merges]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"merge labels must be unique; repeated: {', '.join(dupes)}")
        unknown = sorted(set(self.federation.node_ids) - set(names))
        if unknown:
            raise ValueError(
                f"federation.node_ids names unknown domain(s) {', '.join(unknown)} "
                f"(domains: {', '.join(names)})"
            )
        bound = list(self.federation.node_ids.values())
        shared = sorted({n for n in bound if bound.count(n) > 1})
        if shared:
            raise ValueError(
                f"federation.node_ids binds node(s) {', '.join(map(str, shared))} to "
                "several domains: one node serves one domain"
            )
        return self

    @model_validator(mode="after")
    def _text_encoder_supported(self) -> Scenario:
        """What the text-encoder backbone does not support yet, named up front."""
        if self.model.kind != "text-encoder":
            return self
        unsupported = [
            ("privacy.mechanism 'dp-sgd'", self.privacy.mechanism == "dp-sgd",
             "per-example gradients exist for 'text-seq' only"),
            ("privacy.membership_inference", self.privacy.membership_inference,
             "the attack's per-user losses exist for 'text-seq' only"),
            ("baselines.joint", self.baselines.joint,
             "pooled training exists for 'text-seq' only"),
        ]  # fmt: skip
        for setting, used, reason in unsupported:
            if used:
                raise ValueError(
                    f"{setting} is not supported with model.kind 'text-encoder' ({reason})"
                )
        return self

    @model_validator(mode="after")
    def _check_weave(self) -> Scenario:
        """Weaving targets and sources are distinct merged domains of this scenario."""
        weave = self.weave
        if not weave.enabled:
            if weave.sources:
                raise ValueError("weave.sources is set but weave.targets is empty")
            return self
        merged = [d.name for d in self.merged_domains]
        for field, names in [("weave.targets", weave.targets),
                             *[(f"weave.sources.{t}", v) for t, v in weave.sources.items()]]:  # fmt: skip
            bad = [n for n in names if n not in merged]
            if bad:
                raise ValueError(
                    f"{field} names {', '.join(bad)}, which is not a merged domain of "
                    f"this scenario (merged: {', '.join(merged)}; unseen domains never train)"
                )
            if len(set(names)) != len(names):
                raise ValueError(f"{field} lists a domain twice: {names}")
        unknown = sorted(set(weave.sources) - set(weave.targets))
        if unknown:
            raise ValueError(f"weave.sources has entries for non-targets: {', '.join(unknown)}")
        for target in weave.targets:
            sources = self.weave_sources(target)
            if target in sources:
                raise ValueError(f"weave.sources.{target} lists the target itself")
            if not sources:
                raise ValueError(f"weave target '{target}' has no source domain to weave with")
        if self.privacy.mechanism == "dp-sgd":
            raise ValueError(
                "weave cannot be combined with privacy.mechanism 'dp-sgd' yet (per-example "
                "gradients are computed for whole models); use 'gaussian', which noises "
                "each uploaded adapter"
            )
        labels = [m.display_label for m in weave.fusion]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ValueError(f"weave.fusion labels must be unique; repeated: {', '.join(dupes)}")
        if weave.pooled_oracles and (self.model.kind != "text-seq" or not self.output.save_models):
            raise ValueError(
                "weave.pooled_oracles needs model.kind 'text-seq' (pooled training exists "
                "for it only) and output.save_models = true (the oracles start from the "
                "run's saved θ0 and target adapters)"
            )
        return self

    def weave_sources(self, target: str) -> list[str]:
        """The source domains woven with ``target`` (default: every other merged one)."""
        if target in self.weave.sources:
            return list(self.weave.sources[target])
        return [d.name for d in self.merged_domains if d.name != target]

    @model_validator(mode="after")
    def _joint_oracle_reads_saved_models(self) -> Scenario:
        """The Joint oracle starts from the θ0 the run saved in ``models/``."""
        if self.baselines.joint and not self.output.save_models:
            raise ValueError(
                "baselines.joint needs output.save_models = true (the Joint oracle "
                "trains from the θ0 saved in the run's models/ folder)"
            )
        return self

    @property
    def uploads_item_texts(self) -> bool:
        """Whether merged domains upload their catalogue's item texts with their model:
        only a text-encoder scenario with a learned merge, whose server-side
        pseudo-users are item texts run through the merged encoder."""
        from silorec.merging.registry import get_method

        return self.model.kind == "text-encoder" and any(
            get_method(m.method).needs_context for m in self.merges
        )

    @property
    def merged_domains(self) -> list[DomainSpec]:
        """Domains that fine-tune and contribute to the merge."""
        return [d for d in self.domains if not d.unseen]

    @property
    def unseen_domains(self) -> list[DomainSpec]:
        """Domains only evaluated (zero-shot)."""
        return [d for d in self.domains if d.unseen]

    def with_seed(self, seed: int) -> Scenario:
        """The same scenario with ``seed`` for the run, local training and θ0 (the data
        and its subsampling stay as they are, so seeds compare the same users)."""
        return self.model_copy(
            update={
                "seed": seed,
                "train": self.train.model_copy(update={"seed": seed}),
                "base": self.base.model_copy(update={"seed": seed}),
            }
        )

    def domain(self, name: str) -> DomainSpec:
        """The domain called ``name``; a clear error listing the known ones otherwise."""
        for d in self.domains:
            if d.name == name:
                return d
        known = ", ".join(d.name for d in self.domains)
        raise KeyError(f"scenario '{self.name}' has no domain '{name}' (known: {known})")


def slugify(text: str) -> str:
    """A domain-name-safe form of ``text`` (lowercase, [a-z0-9_-])."""
    slug = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")
    return slug or "domain"
