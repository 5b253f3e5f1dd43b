"""The 50 shipped domains load, and the metrics read them as real proteins (issue 5)."""

import numpy as np
import pytest

from polydiff.plugins.protein import metrics
from polydiff.plugins.protein.data import COORD_SCALE, domain_files, shipped_domains_dataset
from polydiff.plugins.protein.secondary import dssp, psea, to_three_state


def test_all_fifty_domains_load_with_matching_reference_strings(domains):
    assert len(domain_files()) == 50
    assert len(domains) == 50
    for bb, ss in domains:
        assert len(bb) == len(ss) and len(bb) >= 70
        assert np.isfinite(bb.ca).all()


def test_ca_ca_validity_of_real_domains_at_least_99_percent(domains):
    v = metrics.ca_ca_validity([bb for bb, _ in domains])
    assert v >= 0.99
    d = np.concatenate([np.linalg.norm(np.diff(bb.ca, axis=0), axis=1) for bb, _ in domains])
    assert abs(np.median(d) - 3.805) < 0.01  # REFERENCES.md: median 3.805 Å


def test_radius_of_gyration_ratio_of_real_domains_near_one(domains):
    from polydiff.plugins.protein.geometry import expected_rg, radius_of_gyration

    r = np.array([radius_of_gyration(bb.ca) / expected_rg(len(bb)) for bb, _ in domains])
    assert abs(r.mean() - 1.0) <= 0.1
    assert abs(metrics.rg_ratio([bb for bb, _ in domains]) - r.mean()) < 1e-12


def test_psea_agrees_with_shipped_dssp_on_at_least_75_percent(domains):
    agree = total = 0
    for bb, ref in domains:
        p = psea(bb.ca)
        agree += sum(a == b for a, b in zip(p, to_three_state(ref)))
        total += len(ref)
    assert agree / total >= 0.75


def test_dssp_on_full_backbones_agrees_with_shipped_strings(domains):
    per = []
    for bb, ref in domains:
        assert bb.has_full_backbone
        d = dssp(bb.coords, bb.res_names)
        per.append(np.mean([a == b for a, b in zip(d, to_three_state(ref))]))
    assert np.mean(per) >= 0.90  # REFERENCES.md: ~97 % for a full DSSP


def test_clashes_and_pair_distance_divergence_of_real_data_are_small(domains):
    bbs = [bb for bb, _ in domains]
    assert metrics.clash_share(bbs) < 0.005
    assert metrics.backbone_clash_share(bbs) < 0.02
    assert metrics.pair_distance_js(bbs[:25], reference=bbs[25:]) < 0.05
    assert metrics.novelty_rmsd(bbs[:3], reference=bbs) == pytest.approx(0.0, abs=1e-6)


def test_dataset_items_are_centred_nm_with_std_near_sigma_data():
    ds = shipped_domains_dataset()
    xs = [ds[i]["x"] for i in range(len(ds))]
    for x in xs:
        assert abs(float(x.mean(0).abs().max())) < 1e-5
    std = float(np.sqrt(np.mean([float((x**2).mean()) for x in xs])))
    assert 0.7 < std < 1.3  # sigma_data = 1.0 nm
    assert COORD_SCALE == 10.0


def test_crops_have_requested_lengths_and_consecutive_index():
    ds = shipped_domains_dataset(crop=(60, 120), seed=3)
    for i in range(len(ds)):
        it = ds[i]
        assert 60 <= len(it["x"]) <= 120 or len(it["x"]) == len(ds.ca[i])
        assert int(it["res_idx"][0]) == 0
        assert abs(float(it["ss"].sum()) - 1) < 1e-5
