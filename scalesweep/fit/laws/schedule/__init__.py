"""Loss curves under any LR schedule: the LR-annealing law (Tissue et al. 2024) and the
multi-power law (Luo et al. 2025), fitted on a few runs' curves and backtested on the rest."""
