"""The gradient-boosted family (LightGBM): training, artifact, and the object a family seam calls."""
