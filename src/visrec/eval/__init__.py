"""Evaluation: metrics and summaries of predictions against labels."""

from __future__ import annotations

from visrec.eval.summary import UNKNOWN, ClassificationSummary, summarize

__all__ = ["UNKNOWN", "ClassificationSummary", "summarize"]
