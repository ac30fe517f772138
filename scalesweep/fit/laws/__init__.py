"""The laws, one folder or module per family: pure functions from a runs table (and curves) to
a typed result with `to_dict()`. `isoflop/` (Approaches 1 and 2, L_opt(C)), `parametric/`
(Approach 3 and its compute allocation), `lr/` (LR sensitivity and transfer), `batch/`
(critical batch size, Kaplan's two-variable laws), `power_law`, `hparams`, `diagnostics`."""
