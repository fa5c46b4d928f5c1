"""Result labels of the weaving models (one place, so the report can find them)."""

from __future__ import annotations


def adapter_label(domain: str) -> str:
    """A domain's own adapter on the base: target-only on its domain, source-only
    elsewhere."""
    return f"adapter:{domain}"


def hybrid_label(target: str, source: str) -> str:
    """The hybrid adapter woven between ``target`` and ``source``, alone."""
    return f"hybrid:{target}+{source}"


def fused_label(target: str, fusion: str) -> str:
    """``target``'s adapter and its hybrids fused by the merge labelled ``fusion``."""
    return f"weave:{target} {fusion}"


def plain_merge_label(fusion: str) -> str:
    """Every domain's own adapter merged (the 'merging degrades' baseline)."""
    return f"adapters merged {fusion}"


def fedavg_adapter_label() -> str:
    """FedAvg of adapters over every merged domain."""
    return "adapters fedavg"
