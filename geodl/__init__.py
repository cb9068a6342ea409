"""geodl: geometric deep learning for point clouds, graphs and spheres, with symmetry you can test.

Subpackages (a layer imports only layers listed before it):

``geodl.groups``   the group vocabulary: sampling, conversions, Wigner-D, grids, actions on feature kinds
``geodl.ops``      kernels: scatter/segment, 3x3 eigensolver, neighbour search, spherical harmonics
``geodl.testing``  equivariance checks, pytest plugin, hypothesis strategies, example models
``geodl.nn``       the methods (frame averaging, location encoders, ...) and backbones
``geodl.data``     procedural datasets and real-format loaders
``geodl.bench``    benchmark tasks and the training loop
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
