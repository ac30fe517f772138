"""Chinchilla's isoFLOP approaches: one profile per budget (`profiles`), N_opt(C) and D_opt(C)
from them (`approach2`), L_opt(C) (`loss_law`), and the lower envelope of the training curves
(`envelope`, Approach 1)."""
