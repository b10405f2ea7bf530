"""Training: the loop, its recipe, checkpoints, step modes (CUDA graphs, compile) and DDP."""
