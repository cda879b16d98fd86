"""Frechet distance between Gaussian fits of two feature sets (paper 002 eq. 1; Heusel et al.).

``d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``. With features from Inception-v3's pool
layer this is the FID; with any other extractor the number is a Frechet distance in that
extractor's space, comparable only with others from the same extractor.

The trace of the matrix square root is computed exactly with NumPy alone, from the symmetric
form ``Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2))`` (the two matrices under the root
are similar, so they share eigenvalues): ``S1^(1/2)`` and the eigenvalues of the symmetric
positive semi-definite product both come from ``numpy.linalg.eigh``, and the trace is the sum of
the eigenvalues' square roots. Round-off can make eigenvalues of a singular covariance (fewer
samples than dimensions, constant features) slightly negative; those within a relative
tolerance are clipped to 0. If the product is still clearly indefinite or not finite, the
computation is repeated with ``eps`` added to both diagonals, as pytorch-fid does when SciPy's
``sqrtm`` fails (eps 1e-6), and a warning says so.
"""
import warnings

import numpy as np

#: pytorch-fid's diagonal offset for singular covariance products.
EPS = 1e-6
# Eigenvalues above -_NEG_TOL * (largest |eigenvalue|) are round-off and clipped to 0.
_NEG_TOL = 1e-8


def gaussian_stats(features):
    """Mean ``(D,)`` and unbiased covariance ``(D, D)`` (float64) of ``features`` ``(N, D)``."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError('features must be (N, D) with N >= 2, got shape %r' % (f.shape,))
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _psd_sqrt(s):
    w, v = np.linalg.eigh(s)
    w = np.clip(w, 0.0, None)
    return (v * np.sqrt(w)) @ v.T


def trace_sqrt_product(sigma1, sigma2):
    """``Tr((sigma1 sigma2)^(1/2))`` for symmetric PSD matrices; None if not reliably PSD."""
    root1 = _psd_sqrt(sigma1)
    m = root1 @ sigma2 @ root1
    m = 0.5 * (m + m.T)  # symmetric up to round-off; eigh reads one triangle
    w = np.linalg.eigvalsh(m)
    if not np.all(np.isfinite(w)):
        return None
    scale = max(np.abs(w).max(), 1e-300)
    if w.min() < -_NEG_TOL * scale:
        return None
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps=EPS):
    """Squared Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (paper 002 eq. 1).

    Args:
        mu1, mu2: means ``(D,)``.
        sigma1, sigma2: covariances ``(D, D)``, symmetric positive semi-definite.
        eps (float): diagonal offset of the fallback for ill-conditioned products.

    Returns:
        float >= 0 (negative round-off is clipped).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2,
                                                                                    np.float64))
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(
        np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or \
            sigma1.shape != (mu1.size, mu1.size):
        raise ValueError('shapes differ: mu %s / %s, sigma %s / %s'
                         % (mu1.shape, mu2.shape, sigma1.shape, sigma2.shape))
    sigma1, sigma2 = 0.5 * (sigma1 + sigma1.T), 0.5 * (sigma2 + sigma2.T)
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    if tr_covmean is None:
        warnings.warn('Frechet distance: covariance product is not positive semi-definite '
                      'within round-off; adding %g to the diagonals (as pytorch-fid)' % eps)
        offset = np.eye(sigma1.shape[0]) * eps
        tr_covmean = trace_sqrt_product(sigma1 + offset, sigma2 + offset)
        if tr_covmean is None:
            raise ValueError('Frechet distance: covariances are not positive semi-definite')
    diff = mu1 - mu2
    d2 = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean
    return max(float(d2), 0.0)


def frechet_distance_of_features(features1, features2, eps=EPS):
    """:func:`frechet_distance` between the Gaussian fits of two ``(N, D)`` feature sets."""
    return frechet_distance(*gaussian_stats(features1), *gaussian_stats(features2), eps=eps)
