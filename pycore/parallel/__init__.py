"""Training layouts across GPUs: data parallelism and sharding, tensor, pipeline, context and expert parallelism."""
