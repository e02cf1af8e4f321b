"""Accord: federated analytics for health-data consortia.

Each member runs a node beside its own data; researchers send approved analyses;
only disclosure-checked aggregates come back.
"""

__version__ = "0.1.0"
