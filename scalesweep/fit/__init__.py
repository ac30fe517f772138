"""The fitter: runs tables in, isoFLOP curves, scaling laws and LR-sensitivity scores out.

Every fit is a pure function of a pandas DataFrame (one row per trial, see `runs.read_runs`)
returning a typed result with `to_dict()`; plots and reports are written at the edge
(`plots`, `report`, `scalesweep.commands.fit`).
"""
