"""Frechet distance against closed forms: diagonal, commuting, non-commuting and singular cases."""
import warnings

import numpy as np
import pytest

from chainer_yolo_dist.cyclegan.fid import (
    frechet_distance, frechet_distance_of_features, gaussian_stats)


def _commuting_closed_form(mu1, a, mu2, b):
    # For S1 = Q diag(a) Q^T and S2 = Q diag(b) Q^T: |mu1 - mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))


def test_diagonal_covariances():
    mu1, mu2 = np.array([0., 1., 2.]), np.array([1., 1., 0.])
    a, b = np.array([1., 4., 9.]), np.array([4., 4., 1.])
    # |mu diff|^2 = 1 + 0 + 4 = 5; (1 - 2)^2 + 0 + (3 - 1)^2 = 5
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(10.0, abs=1e-12)


def test_one_dimension_is_the_wasserstein_2_distance():
    assert frechet_distance([0.], [[1.]], [3.], [[4.]]) == pytest.approx(9 + 1, abs=1e-12)


def test_commuting_covariances():
    rng = np.random.RandomState(0)
    q, _ = np.linalg.qr(rng.randn(6, 6))
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    mu1, mu2 = rng.randn(6), rng.randn(6)
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(_commuting_closed_form(mu1, a, mu2, b), rel=1e-10)


def test_non_commuting_against_the_eigenvalues_of_the_product():
    # Tr((S1 S2)^(1/2)) is the sum of the square roots of S1 S2's (real, >= 0) eigenvalues.
    rng = np.random.RandomState(1)
    x, y = rng.randn(5, 5), rng.randn(5, 5)
    s1, s2 = x @ x.T + 0.1 * np.eye(5), y @ y.T + 0.1 * np.eye(5)
    assert not np.allclose(s1 @ s2, s2 @ s1)
    tr = np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).real))
    expected = np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance(np.zeros(5), s1, np.zeros(5), s2) == pytest.approx(expected,
                                                                               rel=1e-9)
    assert frechet_distance(np.zeros(5), s2, np.zeros(5), s1) == pytest.approx(expected,
                                                                               rel=1e-9)


def test_identical_and_singular_covariances():
    rng = np.random.RandomState(2)
    f = rng.randn(4, 10)  # 4 samples in 10 dimensions: rank-3 covariance
    mu, s = gaussian_stats(f)
    assert np.linalg.matrix_rank(s) == 3
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # exact path, no fallback needed
        assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
        # A rank-1 against a rank-1 on orthogonal axes: traces add, the cross term is 0.
        e1, e2 = np.zeros(3), np.zeros(3)
        e1[0], e2[1] = 1, 1
        assert frechet_distance(np.zeros(3), 2 * np.outer(e1, e1), np.zeros(3),
                                3 * np.outer(e2, e2)) == pytest.approx(5.0, abs=1e-12)


def test_indefinite_input_falls_back_with_a_warning_or_fails_clearly():
    bad = np.diag([1., -1e-3])  # not a covariance
    with pytest.warns(UserWarning, match='adding'):
        with pytest.raises(ValueError, match='positive semi-definite'):
            frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), bad)


def test_from_samples_approaches_the_analytic_value():
    rng = np.random.RandomState(3)
    n = 200000
    f1 = rng.randn(n, 2) * [1., 2.]
    f2 = rng.randn(n, 2) * [2., 2.] + [1., 0.]
    # 1 + (1 - 2)^2 + 0 = 2
    assert frechet_distance_of_features(f1, f2) == pytest.approx(2.0, abs=0.05)
    with pytest.raises(ValueError):
        gaussian_stats(np.zeros((1, 3)))
