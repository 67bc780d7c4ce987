"""Defences: training-time (weight decay, dropout, early stopping, DP-SGD with accounting)
and output-side (perturbation of the target's query interface)."""

from jaxmia._src.defences import perturbation, training

__all__ = ["perturbation", "training"]
