"""Batch-size laws from loss curves: the steps and tokens to reach a loss (`contours`), the
critical batch size B_crit(L) (`critical`), and Kaplan et al. 2020's L(N, S_min) and L(N, D)
(`kaplan`)."""
