"""Sweeps on Ray: plan (pure), search spaces, the Tune driver, the trial (in place or Train)."""
