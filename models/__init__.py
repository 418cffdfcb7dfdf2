"""Networks, training, evaluation, and import into / load from the BentoML model store."""
