"""Candles: the frame contract and its validation, the Parquet store, the ccxt source and sync, the importer,
and the synthetic market."""
