"""Submission (port 587): what an authenticated EHR's plain message becomes before the 250."""

from .pipeline import SubmissionPipeline, SubmitSettings
from .prepare import Prepared, Refused, SubmitProblem, address, prepare

__all__ = ["Prepared", "Refused", "SubmissionPipeline", "SubmitProblem", "SubmitSettings", "address", "prepare"]
