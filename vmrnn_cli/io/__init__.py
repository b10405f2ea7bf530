"""Raster input and output: readers (GeoTIFF series, NetCDF, Zarr), forecast writers, atomic outputs."""
