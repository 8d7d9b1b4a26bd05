"""The planner graph's state: small and JSON-serialisable; examples, experiments and decisions live in the run store."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

__all__ = ["PlannerState"]


class PlannerState(TypedDict, total=False):
    """One planner run.

    Attributes:
        round: the current data/training round (0 = the first generation).
        scores: validation score of the best candidate of each round, in order.
        pending: the decision the `act` node carries out next ({action, args, reason, by}).
        train_params: hyper-parameter overrides for the next training (from a `tune` decision).
        elapsed: seconds spent in nodes so far (the time budget; time while the process was dead is not counted).
        stopped: why the loop stopped, once it has.
    """

    round: int
    scores: Annotated[list[float], operator.add]
    pending: dict[str, Any] | None
    train_params: dict[str, Any]
    elapsed: float
    stopped: str | None
