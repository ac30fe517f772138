"""Sweeps on Ray: plan (pure), search spaces, the Tune/Train runner, MLflow tracking."""
