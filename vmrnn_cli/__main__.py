"""`python -m vmrnn_cli` (used by torchrun for multi-GPU training)."""

from vmrnn_cli.cli import main

main()
