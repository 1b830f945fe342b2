"""One training step on one GPU: saved activations, the step's moments, optimizers, the allocator."""
