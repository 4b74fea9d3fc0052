"""The run: optimizers, schedulers, losses, metrics, checkpoints and the explicit epoch loop."""
