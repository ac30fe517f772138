"""How far to trust a forecast: backtests of the laws on their own largest budgets
(`backtest`), and prediction intervals calibrated by how the law missed there (`calibrate`)."""
