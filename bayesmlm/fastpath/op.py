"""Stage 3, build (fast path): the per-group q x q algebra of the collapsed likelihood, as one Op.

With M_j = sigma^2 I + L' S_j L (S_j = Z_j'Z_j), b_j = L' z_j (z_j = Z_j'r_j),
M_j = C_j C_j' and w_j = C_j^-1 b_j, the group terms of the collapsed
log-likelihood are

    T = sum_j [ log det M_j - b_j' M_j^-1 b_j / sigma^2 ]
      = sum_j [ 2 sum_i log C_j,ii - |w_j|^2 / sigma^2 ].

:class:`GroupTerms` computes T and its gradient with respect to z (q, J), L
(q, q) and sigma^2 in one Numba loop over groups (a q x q Cholesky
factorisation per group, any q). Written as PyTensor operations the same
algebra and its gradient became some 35 separate loops over the groups and
took 1.1 ms per gradient for 10,000 groups; the kernel, generated for the q at
hand (:mod:`bayesmlm.fastpath.kernels`), takes a fraction of that.
Its gradient, with G_j = M_j^-1 + v_j v_j' / sigma^2 and v_j = M_j^-1 b_j:

    dT/dz_j = -2 L v_j / sigma^2
    dT/dL = sum_j [ 2 S_j L G_j - 2 z_j v_j' / sigma^2 ]
    dT/dsigma^2 = sum_j [ tr(G_j) + |w_j|^2 / sigma^4 ]

The Op is the likelihood of the PyMC model (``sampler="pymc"``, :func:`~bayesmlm.fastpath.model.loglik_at`);
nutpie samples the same density through one generated kernel instead (:mod:`bayesmlm.fastpath.nutpie_driver`).
"""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import disconnected_type
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

from .kernels import group_terms_kernel

__all__ = ["GroupTerms", "group_terms"]

_KERNEL_VERSION = 3


class GroupTerms(Op):
    """T (see the module docstring) of (ztz, zr, L, sigma^2) for q terms; outputs (T, dT/dzr, dT/dL, dT/ds2).

    Inputs: ztz (q(q+1)/2, J), the upper triangle of each group's Z'Z by rows;
    zr (q, J); L (q, q), lower triangular (entries above the diagonal are
    ignored); sigma^2.
    """

    __props__ = ("q",)

    def __init__(self, q: int):
        self.q = int(q)

    def make_node(self, ztz, zr, L, s2):
        ztz, zr, L = (pt.as_tensor_variable(v, dtype="float64") for v in (ztz, zr, L))
        s2 = pt.as_tensor_variable(s2, dtype="float64")
        return Apply(self, [ztz, zr, L, s2], [pt.dscalar(), pt.dmatrix(), pt.dmatrix(), pt.dscalar()])

    def perform(self, node, inputs, outputs):
        ztz, zr, L, s2 = inputs
        result = group_terms_kernel(self.q)(np.ascontiguousarray(ztz, dtype=float), np.ascontiguousarray(zr, dtype=float),
                                            np.ascontiguousarray(L, dtype=float), float(s2))
        for out, value in zip(outputs, result):
            out[0] = np.asarray(value, dtype=float)

    def connection_pattern(self, node):
        # The statistics are data: no gradient flows to them. Only T is differentiated (its gradient
        # is the other outputs), so those are marked as not depending on the inputs.
        return [[False] * 4, [True, False, False, False], [True, False, False, False], [True, False, False, False]]

    def pullback(self, inputs, outputs, cotangents):
        _, dzr, dL, ds2 = outputs
        g = cotangents[0]
        return [disconnected_type(), g * dzr, g * dL, g * ds2]


@register_funcify_default_op_cache_key(GroupTerms)
def _numba_group_terms(op, node, **kwargs):
    return group_terms_kernel(op.q, op=True), _KERNEL_VERSION


def group_terms(q: int, ztz, zr, L, s2):
    """T for q random terms as a PyTensor expression (differentiable in zr, L and s2).

    Examples
    --------
    >>> import numpy as np
    >>> round(float(group_terms(1, np.ones((1, 2)), np.zeros((1, 2)), np.eye(1), 1.0).eval()), 6)
    1.386294
    """
    return GroupTerms(q)(ztz, zr, L, s2)[0]
