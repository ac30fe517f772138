"""scalesweep: small-model sweeps on Ray, tracked in MLflow, fitted into scaling laws."""

__version__ = "0.1.0"
