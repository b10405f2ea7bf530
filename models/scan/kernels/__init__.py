"""The Triton kernels (device code) of the fast scans; their launches and autograd live in models/scan/triton_*.py."""
