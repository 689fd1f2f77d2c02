"""Batched linear algebra for many small K × K matrices: unrolled over the static K up to
:data:`UNROLL_MAX`, LAPACK's batched routines beyond.

Unrolled, the element-wise loops fuse into a few XLA kernels, which for K ≤ UNROLL_MAX run
faster than a LAPACK call over the batch; their code grows as K³, and beyond that size the
compilation of the programs that use them grows with it (``docs/performance.md``). A
non-positive pivot gives NaN either way, like ``jnp.linalg.cholesky``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: The largest K whose systems are unrolled; larger ones go to LAPACK.
UNROLL_MAX = 4


def cholesky(A):
    """Lower Cholesky factors of a batch of SPD matrices A (..., K, K)."""
    K = A.shape[-1]
    if K > UNROLL_MAX:
        return jnp.linalg.cholesky(A, symmetrize_input=False)
    L = [[None] * K for _ in range(K)]
    for j in range(K):
        s = A[..., j, j] - sum((L[j][k] ** 2 for k in range(j)), jnp.zeros_like(A[..., 0, 0]))
        d = jnp.sqrt(s)
        L[j][j] = d
        for i in range(j + 1, K):
            t = A[..., i, j] - sum((L[i][k] * L[j][k] for k in range(j)), jnp.zeros_like(d))
            L[i][j] = t / d
    zero = jnp.zeros_like(A[..., 0, 0])
    return jnp.stack([jnp.stack([L[i][j] if j <= i else zero for j in range(K)], -1) for i in range(K)], -2)


def solve_lower(L, b):
    """Solve L x = b for lower-triangular L (..., K, K) and b (..., K)."""
    K = L.shape[-1]
    if K > UNROLL_MAX:
        return _triangular(L, b[..., None], False)[..., 0]
    x = []
    for i in range(K):
        t = b[..., i] - sum((L[..., i, k] * x[k] for k in range(i)), jnp.zeros_like(b[..., 0]))
        x.append(t / L[..., i, i])
    return jnp.stack(x, -1)


def solve_upper_t(L, b):
    """Solve Lᵀ x = b for lower-triangular L (..., K, K) and b (..., K)."""
    K = L.shape[-1]
    if K > UNROLL_MAX:
        return _triangular(L, b[..., None], True)[..., 0]
    x = [None] * K
    for i in reversed(range(K)):
        t = b[..., i] - sum((L[..., k, i] * x[k] for k in range(i + 1, K)), jnp.zeros_like(b[..., 0]))
        x[i] = t / L[..., i, i]
    return jnp.stack(x, -1)


def cho_solve(L, b):
    """Solve (L Lᵀ) x = b given the lower Cholesky factor L."""
    return solve_upper_t(L, solve_lower(L, b))


def inv_lower_t(L):
    """S = L^{-T} (upper triangular), so that S Sᵀ = (L Lᵀ)^{-1}."""
    K = L.shape[-1]
    eye = jnp.broadcast_to(jnp.eye(K, dtype=L.dtype), L.shape)
    if K > UNROLL_MAX:
        return _triangular(L, eye, True)
    cols = [solve_upper_t(L, eye[..., :, k]) for k in range(K)]
    return jnp.stack(cols, -1)


def _triangular(L, B, transpose: bool):
    """Solve L X = B (or Lᵀ X = B) for lower-triangular L (..., K, K) and B (..., K, n) by LAPACK."""
    return jax.lax.linalg.triangular_solve(L, B, left_side=True, lower=True, transpose_a=transpose)
