"""Demand forecasting, pure: features (windows -> model inputs), the Keras LSTM (training only),
the numpy kernel (serving), metrics, the rolling-origin backtest and the LightGBM baseline."""
