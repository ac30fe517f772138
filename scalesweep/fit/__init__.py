"""The fitter: runs tables in; isoFLOP curves, scaling laws, LR sensitivity and training
diagnostics out. Everything here is a pure function of DataFrames: reading MLflow or a file is
the caller's edge (`scalesweep.sources`), and nothing here imports MLflow, Ray or the sweep.

Layers, each importing only those below it (tests/test_architecture.py checks):
    base, options, format, runs    what every kind is made of; the runs table's checks
    numerics/                      L-BFGS, Huber, log-space regression, resampling
    laws/<family>/                 the fits, one folder or module per family
    forecast/                      backtests, calibrated intervals, Approach 2 against 3
    plots/                         one module per family
    kinds/                         the registry: one module of typed entries per family
    report/                        report.md, report.html, the text summary
    pipeline                       running the kinds asked for into fit.json and the report
"""

from scalesweep.fit.base import FitData, FitKind
from scalesweep.fit.kinds import KINDS
from scalesweep.fit.options import FitOptions

__all__ = ["KINDS", "FitData", "FitKind", "FitOptions"]
