"""Compute multipliers of variants (`--kind compare`): the frontier per variant and budget
(`frontier`), a law L(C) = E + A·C^-α per variant (`law`), the multiplier M(C) with bootstrap
intervals and the crossover (`multiplier`), all from the runs table (`fit.fit_compare`)."""
