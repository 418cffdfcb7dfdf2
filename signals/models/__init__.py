"""Models: the BentoML model store (registry, SHA-256), metrics, the scaler, the `ModelFamily` seam, and one
subpackage per family (`cnn_lstm`, `ppo`)."""
