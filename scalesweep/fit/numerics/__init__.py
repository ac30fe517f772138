"""Numerical pieces the laws share, with no knowledge of runs or sweeps: batched L-BFGS
(`lbfgs`), the Huber objective of Approach 3 (`huber`), log-space regressions (`regression`)
and resampling intervals (`resampling`)."""
