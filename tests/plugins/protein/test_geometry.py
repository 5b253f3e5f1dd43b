"""Ideal backbone placement from Cα, frames, Kabsch — against real structures and closed forms."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from polydiff.plugins.protein import geometry as g


def test_ideal_peptide_template_gives_3_80_angstrom_ca_ca():
    assert g.CA_CA_IDEAL == pytest.approx(3.80, abs=0.01)  # trans peptide, Engh & Huber geometry


def test_placed_atoms_have_ideal_bond_lengths():
    rng = np.random.default_rng(0)
    # a random chain with 3.8 Å steps
    steps = rng.normal(size=(30, 3))
    ca = np.cumsum(3.8 * steps / np.linalg.norm(steps, axis=1, keepdims=True), axis=0)
    bb = g.place_backbone(ca)
    np.testing.assert_allclose(np.linalg.norm(bb[:, 2] - bb[:, 3], axis=1), g.C_O, atol=1e-6)
    # N(i+1) and C(i) of one peptide: exact C–N bond when CA–CA equals the template's
    ca_ideal = ca * (g.CA_CA_IDEAL / 3.8)
    bb = g.place_backbone(ca_ideal)
    np.testing.assert_allclose(np.linalg.norm(bb[1:, 0] - bb[:-1, 2], axis=1), g.C_N, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(bb[:, 1] - bb[:, 2], axis=1), g.CA_C, atol=1e-6)


def test_placed_backbone_is_close_to_real_atoms(domains):
    errs = {0: [], 2: [], 3: []}
    for bb, _ in domains[:20]:
        X = g.place_backbone(bb.ca)
        for k in errs:
            errs[k].append(np.linalg.norm(X[:, k] - bb.coords[:, k], axis=1))
    rms = {k: float(np.sqrt(np.mean(np.concatenate(v) ** 2))) for k, v in errs.items()}
    assert rms[0] < 0.5 and rms[2] < 0.6 and rms[3] < 1.5  # Å (N, C, O)


def test_placement_is_rotation_equivariant():
    rng = np.random.default_rng(1)
    ca = np.cumsum(rng.normal(size=(12, 3)) * 2, 0)
    R = Rotation.random(random_state=2).as_matrix()
    np.testing.assert_allclose(g.place_backbone(ca @ R.T + 5.0), g.place_backbone(ca) @ R.T + 5.0, atol=1e-9)


def test_frames_are_orthonormal_right_handed_and_rotate():
    rng = np.random.default_rng(3)
    ca = np.cumsum(rng.normal(size=(10, 3)) * 2, 0)
    F = g.ca_frames(ca)
    np.testing.assert_allclose(F @ F.transpose(0, 2, 1), np.broadcast_to(np.eye(3), F.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(F), 1.0, atol=1e-9)
    R = Rotation.random(random_state=4).as_matrix()
    np.testing.assert_allclose(g.ca_frames(ca @ R.T), F @ R.T, atol=1e-10)


def test_kabsch_recovers_a_known_motion_and_rmsd():
    rng = np.random.default_rng(5)
    p = rng.normal(size=(20, 3))
    R = Rotation.random(random_state=6).as_matrix()
    q = p @ R.T + np.array([1.0, -2.0, 3.0])
    R2, t = g.kabsch(p, q)
    np.testing.assert_allclose(R2, R, atol=1e-10)
    assert g.rmsd(p, q) == pytest.approx(0.0, abs=1e-10)
    assert g.rmsd(p, p + 1.0, superpose=False) == pytest.approx(np.sqrt(3.0))


def test_rg_closed_form():
    ca = np.array([[1.0, 0, 0], [-1.0, 0, 0]])
    assert g.radius_of_gyration(ca) == pytest.approx(1.0)
    assert g.expected_rg(100) == pytest.approx(2.2 * 100**0.38)
