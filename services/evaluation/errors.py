"""The one error of the evaluation commands."""

from __future__ import annotations


class EvalError(RuntimeError):
    """The evaluation cannot go on (bad input, a service that does not start)."""
