"""Candles in, model inputs out: sources, the Parquet store, and pure feature and label functions."""
