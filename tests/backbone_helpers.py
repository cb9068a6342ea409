"""Small backbone wrappers shared by the tests of the methods that wrap backbones (frame averaging,
TinvNN). Importable from any test as ``from backbone_helpers import Reshape`` (pytest puts tests/
on sys.path)."""

from torch import nn


class Reshape(nn.Module):
    """Backbone output (rows, C*k) -> (rows, C, k) or (rows, C, k, k)."""

    def __init__(self, inner, *shape):
        super().__init__()
        self.inner, self.shape = inner, shape

    def forward(self, x, pos, batch, **kw):
        out = self.inner(x, pos, batch, **kw)
        return out.reshape(out.shape[0], *self.shape)
