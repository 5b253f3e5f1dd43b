"""Structures in: PDB/mmCIF/gz parsing, altlocs, hetero residues, missing atoms, chain
breaks, chain selection, length filters, errors naming file/chain/residue."""

import gzip

import numpy as np
import pytest

from polydiff.errors import InputError
from polydiff.plugins.protein.data import domain_files
from polydiff.plugins.protein.structures import LoadReport, find_breaks, load_backbones, load_source


def atom(serial, name, resn, chain, resi, xyz, altloc=" ", occ=1.0, het=False, element=None):
    rec = "HETATM" if het else "ATOM  "
    element = element or name[0]
    return (
        f"{rec}{serial:5d} {name:<4}{altloc}{resn:>3} {chain}{resi:4d}    "
        f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}{occ:6.2f}{20.0:6.2f}          {element:>2}"
    )


def chain_lines(chain="A", n=6, start=1, gap_after=None, spacing=3.8, serial=1, skip_ca=None):
    lines = []
    x = 0.0
    for k in range(n):
        resi = start + k
        if gap_after is not None and k == gap_after + 1:
            x += 6.0
        base = np.array([x, (k % 2) * 0.5, 0.0])
        for name, off in (("N", (-1.0, 0.5, 0.0)), ("CA", (0, 0, 0)), ("C", (1.0, 0.4, 0.3)), ("O", (1.2, 1.5, 0.3))):
            if name == "CA" and skip_ca == k:
                continue
            lines.append(atom(serial, name, "ALA", chain, resi, base + np.array(off)))
            serial += 1
        x += spacing
    return lines, serial


def write(tmp_path, name, lines, gz=False):
    text = "\n".join(lines + ["END"]) + "\n"
    p = tmp_path / name
    if gz:
        with gzip.open(p, "wt") as f:
            f.write(text)
    else:
        p.write_text(text)
    return p


def test_pdb_and_gz_give_the_same_backbone(tmp_path):
    lines, _ = chain_lines()
    a = load_backbones(write(tmp_path, "x.pdb", lines))
    b = load_backbones(write(tmp_path, "x.pdb.gz", lines, gz=True))
    assert len(a) == len(b) == 1
    np.testing.assert_allclose(a[0].coords, b[0].coords)
    assert a[0].coords.shape == (6, 4, 3) and list(a[0].res_ids) == [1, 2, 3, 4, 5, 6]


def test_mmcif_round_trip_matches_pdb(tmp_path):
    from Bio.PDB import MMCIFIO, PDBParser

    lines, _ = chain_lines(n=5, start=10)
    pdb = write(tmp_path, "y.pdb", lines)
    s = PDBParser(QUIET=True).get_structure("y", str(pdb))
    io = MMCIFIO()
    io.set_structure(s)
    io.save(str(tmp_path / "y.cif"))
    a, b = load_backbones(pdb), load_backbones(tmp_path / "y.cif")
    np.testing.assert_allclose(a[0].coords, b[0].coords, atol=1e-3)
    assert list(b[0].res_ids) == list(range(10, 15))


def test_altloc_keeps_highest_occupancy(tmp_path):
    lines, serial = chain_lines(n=4)
    # residue 5 with two CA altlocs: B has the higher occupancy
    lines += [
        atom(serial, "N", "ALA", "A", 5, (14.2, 0.5, 0)),
        atom(serial + 1, "CA", "ALA", "A", 5, (15.2, 0, 0), "A", 0.3),
        atom(serial + 2, "CA", "ALA", "A", 5, (15.2, 1.0, 0), "B", 0.7),
    ]
    bb = load_backbones(write(tmp_path, "alt.pdb", lines), breaks="mask")[0]
    np.testing.assert_allclose(bb.ca[-1], [15.2, 1.0, 0.0], atol=1e-3)


def test_hetero_residues_and_water_are_skipped(tmp_path):
    lines, serial = chain_lines(n=5)
    lines += [
        atom(serial, "C1", "LIG", "A", 100, (0, 5, 5), het=True, element="C"),
        atom(serial + 1, "O", "HOH", "A", 201, (3, 5, 5), het=True),
    ]
    bb = load_backbones(write(tmp_path, "het.pdb", lines))[0]
    assert len(bb) == 5 and "LIG" not in bb.res_names and "HOH" not in bb.res_names


def test_missing_ca_names_file_chain_and_residue_or_is_counted_skip(tmp_path):
    lines, _ = chain_lines(n=6, skip_ca=2)
    p = write(tmp_path, "noca.pdb", lines)
    with pytest.raises(InputError) as e:
        load_backbones(p)
    msg = str(e.value)
    assert "noca.pdb" in msg and "chain A" in msg and "ALA 3" in msg and "CA" in msg
    rep = LoadReport()
    out = load_backbones(p, on_error="skip", report=rep, breaks="mask")
    assert len(rep.skipped) == 1 and len(out[0]) == 5


def test_chain_breaks_split_or_mask(tmp_path):
    lines, _ = chain_lines(n=10, gap_after=3)
    p = write(tmp_path, "brk.pdb", lines)
    rep = LoadReport()
    segs = load_backbones(p, breaks="split", report=rep)
    assert [len(s) for s in segs] == [4, 6] and rep.split_segments == 1
    whole = load_backbones(p, breaks="mask")
    assert len(whole) == 1 and list(whole[0].breaks) == [3]
    assert list(find_breaks(whole[0].ca)) == [3]


def test_chain_selection_and_length_filters(tmp_path):
    a, serial = chain_lines("A", n=8)
    b, _ = chain_lines("B", n=3, serial=serial)
    p = write(tmp_path, "two.pdb", a + ["TER"] + b)
    assert [x.chain_id for x in load_backbones(p)] == ["A", "B"]
    assert [x.chain_id for x in load_backbones(p, chains=["B"])] == ["B"]
    rep = LoadReport()
    kept = load_backbones(p, min_len=5, report=rep)
    assert [x.chain_id for x in kept] == ["A"] and rep.filtered_length == 1
    with pytest.raises(InputError, match="chain"):
        load_backbones(p, chains=["Z"])


def test_empty_and_garbled_files_raise_input_error_with_file(tmp_path):
    empty = write(tmp_path, "empty.pdb", [])
    with pytest.raises(InputError, match="empty.pdb"):
        load_backbones(empty)
    lines, _ = chain_lines(n=4)
    lines[5] = lines[5][:30] + "   abc.def" + lines[5][40:]  # garbled coordinate
    bad = write(tmp_path, "bad.pdb", lines)
    with pytest.raises(InputError) as e:
        load_backbones(bad)
    assert "bad.pdb" in str(e.value) and "line" in str(e.value)
    rep = LoadReport()
    assert load_backbones(bad, on_error="skip", report=rep) == [] and len(rep.skipped) == 1


def test_directory_and_file_list_sources():
    files = [f for f, _ in domain_files()[:3]]
    rep = LoadReport()
    bbs = load_source(files, report=rep, breaks="mask")
    assert len(bbs) == 3 and rep.files == 3
    d = load_source(files[0].parent, breaks="mask", min_len=170)
    assert all(len(b) >= 170 for b in d) and len(d) >= 1


def test_non_finite_coordinates_are_reported_as_such(tmp_path):
    lines, _ = chain_lines(n=6)
    lines[5] = lines[5][:30] + f"{'nan':>8}" + lines[5][38:]  # residue 2's CA x
    lines[11] = lines[11][:38] + f"{'inf':>8}" + lines[11][46:]  # residue 3's O y
    p = write(tmp_path, "nan.pdb", lines)
    with pytest.raises(InputError) as e:
        load_backbones(p)
    assert (e.value.record, e.value.field) == ("chain A residue ALA 2", "coordinates")
    assert "non-finite" in str(e.value) and "CA" in str(e.value) and "no CA" not in str(e.value)
    rep = LoadReport()
    out = load_backbones(p, on_error="skip", report=rep, breaks="mask")
    assert len(out[0]) == 4 and [r for _, r, _ in rep.skipped] == ["chain A residue ALA 2", "chain A residue ALA 3"]
    assert "atom(s) O" in rep.skipped[1][2]


def test_truncated_pdb_warns(tmp_path):
    lines, _ = chain_lines(n=6)
    text = "\n".join(lines)
    cut_tail = tmp_path / "cut_tail.pdb"
    cut_tail.write_text(text[:-10])  # the last record loses its element/charge columns
    with pytest.warns(UserWarning, match="cut_tail.pdb.*truncated"):
        assert len(load_backbones(cut_tail)[0]) == 6
    cut_coords = tmp_path / "cut_coords.pdb"
    cut_coords.write_text(text[:-40])  # ... and its coordinates: unreadable
    with pytest.warns(UserWarning, match="truncated"), pytest.raises(InputError, match="cut_coords.pdb"):
        load_backbones(cut_coords)


def test_complete_files_without_end_record_do_not_warn(tmp_path):
    import warnings

    lines, _ = chain_lines(n=6)
    p = tmp_path / "noend.pdb"
    p.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_backbones(p)[0]) == 6
        assert load_source(domain_files()[0][0])
