"""What tests share: the demo world, candle factories, paths to the real data, and small helpers."""
