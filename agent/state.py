"""The planner graph's state: small; examples, experiments, decisions and each node's work live in the run store."""

from __future__ import annotations

from typing import Any, TypedDict

__all__ = ["PlannerState"]


class PlannerState(TypedDict, total=False):
    """Where one planner run is.

    Attributes:
        entry: the node the graph starts at (read from the run store: a resumed run continues there).
        round: the current data/training round (0 = the first generation).
        pending: the decision the `act` node carries out next ({action, args, reason, by}).
    """

    entry: str
    round: int
    pending: dict[str, Any] | None
