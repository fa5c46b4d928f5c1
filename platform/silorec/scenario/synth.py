"""Scenarios of many synthetic domains, for scale studies (``silorec scenario synth``).

Every domain draws from one latent world (``world_seed``: shared topics and topic
transitions, so a merge has something to share); each draws its own number of users,
of items and its mean sequence length, log-uniformly from the given ranges with the
generator's seed, so a 256-domain scenario has small and large catalogues, short and
long histories, as real federations do. The other settings come from a base scenario
(default: a small, fast one: hashing text encoder, 16-d one-layer model, 2 epochs,
two training-free merges); only its ``[[domains]]`` are replaced. The result is
validated before it is returned.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from silorec.scenario.schema import Scenario

SMALL_BASE = """
name = "synth"
description = "Synthetic domains for scale studies."
seed = 0

[text]
encoder = "hashing"
hashing_dim = 64

[model]
dim = 16
layers = 1
heads = 2
max_len = 10

[train]
epochs = 2
batch_size = 64
progress = false
max_valid_users = 50

[federation]
min_domains = 2
connect_timeout_s = 600
describe_timeout_s = 3600
train_timeout_s = 3600
eval_timeout_s = 3600

[output]
plots = false

[[merges]]
method = "average"

[[merges]]
method = "ties"
density = 0.2
lambda = 1.0

[[domains]]
name = "placeholder"
data = { kind = "synthetic" }
"""


def _log_uniform(rng: np.random.Generator, low: float, high: float, n: int) -> np.ndarray:
    if low > high:
        raise ValueError(f"range {low}..{high}: the low end is above the high end")
    return np.exp(rng.uniform(np.log(low), np.log(high), size=n))


def synth_scenario(
    n_domains: int,
    *,
    unseen: int = 1,
    users: tuple[int, int] = (120, 120),
    items: tuple[int, int] = (60, 60),
    lengths: tuple[float, float] = (8.0, 8.0),
    seed: int = 0,
    world_seed: int = 1,
    base: dict[str, Any] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """A validated scenario (as TOML-ready data) of ``n_domains`` synthetic domains, the
    last ``unseen`` of them unseen."""
    if n_domains < 2:
        raise ValueError("a federation needs at least 2 domains")
    if not 0 <= unseen < n_domains:
        raise ValueError(f"unseen must be between 0 and {n_domains - 1}, got {unseen}")
    scenario = dict(base if base is not None else tomllib.loads(SMALL_BASE))
    scenario["name"] = name or f"synth-{n_domains}"
    scenario["description"] = (
        f"{n_domains} synthetic domains ({unseen} unseen) of one latent world: users "
        f"{users[0]}-{users[1]}, items {items[0]}-{items[1]}, mean length "
        f"{lengths[0]:g}-{lengths[1]:g} (silorec scenario synth, seed {seed})."
    )
    rng = np.random.default_rng(seed)
    n_users = np.rint(_log_uniform(rng, *users, n_domains)).astype(int)
    n_items = np.rint(_log_uniform(rng, *items, n_domains)).astype(int)
    mean_length = _log_uniform(rng, *lengths, n_domains)
    width = len(str(n_domains - 1))
    scenario["domains"] = [
        {
            "name": f"d{i:0{width}d}",
            **({"unseen": True} if i >= n_domains - unseen else {}),
            "data": {
                "kind": "synthetic", "world_seed": world_seed, "n_users": int(n_users[i]),
                "n_items": int(n_items[i]), "mean_length": round(float(mean_length[i]), 2),
                "seed": i + 1,
            },
        }
        for i in range(n_domains)
    ]  # fmt: skip
    Scenario.model_validate(scenario)  # a scenario error names the field now
    return scenario


def write_synth(path: Path, scenario: dict[str, Any]) -> Path:
    """Write ``scenario`` as TOML, atomically."""
    from silorec.results.io import write_text_atomic

    return write_text_atomic(Path(path), tomli_w.dumps(scenario))
