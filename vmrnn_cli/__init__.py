"""vmrnn: everything around the VMRNN network: CLI, raster I/O, cube, training, prediction."""

__version__ = "0.1.0"
