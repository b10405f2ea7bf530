"""The data between rasters and the model: the grid, the prepared cube, its windows and time axis."""
