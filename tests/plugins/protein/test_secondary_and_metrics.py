"""Secondary structure on ideal helices/strands and metric closed forms."""

import numpy as np
import pytest

from polydiff.plugins.protein import metrics as M
from polydiff.plugins.protein.secondary import ca_descriptors, dihedrals, psea


def ideal_helix(n, rise=1.5, turn_deg=100.0, radius=2.3, handed=1):
    k = np.arange(n)
    a = np.radians(turn_deg) * k * handed
    return np.stack([radius * np.cos(a), radius * np.sin(a), rise * k], 1)


def zigzag_strand(n, d=3.8, tau=124.0):
    half = np.radians(tau) / 2
    k = np.arange(n)
    return np.stack([k * d * np.sin(half), (k % 2) * d * np.cos(half), np.zeros(n)], 1)


def test_alpha_helix_descriptors_and_assignment():
    ca = ideal_helix(20)
    f = ca_descriptors(ca)
    assert np.nanmean(np.linalg.norm(np.diff(ca, axis=0), axis=1)) == pytest.approx(3.80, abs=0.05)
    assert np.nanmedian(f["d3"]) == pytest.approx(5.3, abs=0.5) and np.nanmedian(f["alpha"]) == pytest.approx(
        50, abs=20
    )
    ss = psea(ca)
    assert ss[2:-3] == "H" * (20 - 5)


def test_left_handed_helix_has_negative_dihedral():
    ca = ideal_helix(10, handed=-1)
    assert np.all(dihedrals(ca) < 0)
    assert np.all(dihedrals(ideal_helix(10)) > 0)


def test_isolated_strand_needs_a_partner_but_a_hairpin_is_e():
    s = zigzag_strand(8)
    assert "E" not in psea(s)
    b = s[::-1] + np.array([0.0, 4.8, 0.0])  # antiparallel partner 4.8 Å away
    hairpin = np.concatenate([s, b])
    ss = psea(hairpin)
    assert ss.count("E") >= 8


def chain(n, d=3.8):
    return np.stack([np.arange(n) * d, np.zeros(n), np.zeros(n)], 1)


def test_validity_deviation_and_clash_closed_forms():
    c = chain(11)
    assert M.ca_ca_validity([c]) == 1.0 and M.ca_ca_deviation([c]) == pytest.approx(0.0, abs=1e-12)
    c2 = c.copy()
    c2[5:] += np.array([0.5, 0, 0])  # one bond of 4.3 Å
    assert M.ca_ca_validity([c2]) == pytest.approx(9 / 10)
    assert M.ca_ca_deviation([c2]) == pytest.approx(0.05)
    assert M.clash_share([c]) == 0.0
    c3 = c.copy()
    c3[10] = c3[0] + np.array([0, 2.0, 0])  # residue 10 within 2 Å of residue 0
    assert M.clash_share([c3]) == pytest.approx(2 / 11)
    assert M.clash_structure_share([c, c3]) == 0.5
    assert M.backbone_clash_share([c]) == 0.0 and M.backbone_clash_share([c3]) > 0


def test_rg_ratio_js_and_rmsd_metrics():
    h = ideal_helix(30)
    assert M.rg_ratio([h]) == pytest.approx(np.sqrt(((h - h.mean(0)) ** 2).sum(1).mean()) / (2.2 * 30**0.38))
    assert M.pair_distance_js([h], reference=[h]) == pytest.approx(0.0, abs=1e-12)
    assert M.pair_distance_js([chain(30)], reference=[h]) > 0.3
    sub = h[5:20] + 3.0
    assert M.novelty_rmsd([sub], reference=[chain(30), h]) == pytest.approx(0.0, abs=1e-6)
    assert M.diversity_rmsd([h, h + 1.0]) == pytest.approx(0.0, abs=1e-6)
    assert M.diversity_rmsd([h, chain(30)]) > 3.0
    assert M.helix_fraction([h]) > 0.7 and M.strand_fraction([h]) == 0.0
