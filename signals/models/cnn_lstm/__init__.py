"""The CNN-LSTM family: network, training, artifact (save / verified load), stacked inference, evaluation."""
