"""A domain node's work (node side only: reads the domain's interactions)."""

from silorec.node.assignment import NodeAssignment, NodeConfigError, assign_domain
from silorec.node.domain_node import DomainNode, TrainOutcome

__all__ = ["DomainNode", "NodeAssignment", "NodeConfigError", "TrainOutcome", "assign_domain"]
