"""Training: losses, crops and the training loop."""
