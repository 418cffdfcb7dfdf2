"""Pure functions from candles to model inputs: indicators, CNN-LSTM features, PPO observation, labels. No I/O."""
