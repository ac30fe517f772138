"""Wortsman et al. 2023's LR sensitivity and the best LR's transfer across widths
(`sensitivity`), with how runs are grouped and scored (`groups`)."""
