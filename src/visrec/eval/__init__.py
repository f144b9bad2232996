"""Evaluation: metrics as accumulators, split planning with a leakage guard, runs per encoder/mode, reports."""

from __future__ import annotations

from visrec.eval.metrics import ClassificationMetrics, CoverageCurve, OpenSetMetrics, RetrievalMetrics
from visrec.eval.runner import EvalConfig, evaluate, evaluate_source
from visrec.eval.splits import SplitPlan, plan_split
from visrec.eval.summary import UNKNOWN, ClassificationSummary, summarize

__all__ = [
    "UNKNOWN",
    "ClassificationMetrics",
    "ClassificationSummary",
    "CoverageCurve",
    "EvalConfig",
    "OpenSetMetrics",
    "RetrievalMetrics",
    "SplitPlan",
    "evaluate",
    "evaluate_source",
    "plan_split",
    "summarize",
]
