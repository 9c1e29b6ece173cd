"""Hierarchical Dynamic Labeling (HDL) on top of semi-supervised baselines."""

__version__ = "0.1.0"
