"""Downstream tasks: one module per task family."""
