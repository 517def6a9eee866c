"""The learned image codec: layers, models, entropy coding, packets and the encode/decode pipeline."""
