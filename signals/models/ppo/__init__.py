"""The PPO family: trading environment, training, artifact (save / verified load without unpickling)."""
