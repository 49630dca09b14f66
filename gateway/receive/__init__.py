"""Receiving over SMTP: the pipeline behind port 25 (open, trust, store, deliver into records, acknowledge)."""

from .pipeline import ReceiveSettings, ReceivingPipeline

__all__ = ["ReceiveSettings", "ReceivingPipeline"]
