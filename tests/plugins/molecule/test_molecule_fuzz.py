"""Hostile input for every molecule parser: only polydiff.errors exceptions, naming file
and record; no hangs; every record either parsed or counted as skipped."""

import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polydiff.errors import InputError, PolydiffError
from polydiff.plugins.molecule import data as D
from polydiff.plugins.molecule import qm9

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_atom_line = st.tuples(
    st.sampled_from(["C", "H", "O", "N", "F", "Xx", "1", "", "nan"]),
    st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.text(max_size=4)), min_size=0, max_size=5
    ),
).map(lambda t: " ".join([t[0], *t[1]]))
_xyz_text = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(st.integers(-2, 6).map(str), _atom_line, st.text(max_size=20)), max_size=20).map("\n".join),
)


def _check_error(e: PolydiffError, fname: str):
    assert isinstance(e, InputError)
    assert fname in str(e)


@FUZZ
@given(text=_xyz_text)
def test_xyz_loader(tmp_path, text):
    f = tmp_path / "fuzz.xyz"
    f.write_text(text, errors="replace")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = D.load_xyz(f, on_error="skip")
    except PolydiffError as e:  # e.g. the whole file cannot be delimited
        _check_error(e, "fuzz.xyz")
        return
    frames = list(D.parse_xyz_text(text, file=f))
    assert len(ds) + len(ds.skipped) == len(frames)  # nothing dropped silently
    for _, _rec, msg in ds.skipped:
        assert "fuzz.xyz" in msg and "record" in msg
    try:
        D.load_xyz(f)
    except PolydiffError as e:
        _check_error(e, "fuzz.xyz")


_MOLBLOCK = """mol
     RDKit          3D

  2  1  0  0  0  0  0  0  0  0999 V2000
    0.0000    0.0000    0.0000 C   0  0  0  0  0  0  0  0  0  0  0  0
    1.2000    0.0000    0.0000 O   0  0  0  0  0  0  0  0  0  0  0  0
  1  2  2  0
M  END
$$$$
"""


@FUZZ
@given(cuts=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 30), st.text(max_size=6)), max_size=4))
def test_sdf_loader(tmp_path, cuts):
    text = _MOLBLOCK * 3
    for pos, length, ins in cuts:  # random edits of a valid file
        text = text[:pos] + ins + text[pos + length :]
    f = tmp_path / "fuzz.sdf"
    f.write_text(text, errors="replace")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = D.load_sdf(f, on_error="skip")
    except PolydiffError as e:
        _check_error(e, "fuzz.sdf")
        return
    for _, _rec, msg in ds.skipped:
        assert "fuzz.sdf" in msg and "record" in msg
    try:
        D.load_sdf(f)
    except PolydiffError as e:
        _check_error(e, "fuzz.sdf")


@FUZZ
@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from(["C", "CC(", "c1ccccc1", "[Xe]", "C1CC", "", "#x", "N#N"]),
            st.text(alphabet="CNOF()=#[]1234c+-@H ", max_size=12),
        ),
        max_size=4,
    )
)
def test_smiles_loader(tmp_path, lines):
    f = tmp_path / "fuzz.smi"
    f.write_text("\n".join(lines))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = D.load_smiles(f, on_error="skip", mmff=False)
    except PolydiffError as e:
        _check_error(e, "fuzz.smi")
        return
    n_lines = sum(1 for s in lines if s.strip() and not s.strip().startswith("#"))
    assert len(ds) + len(ds.skipped) == n_lines


@FUZZ
@given(elements=st.text(max_size=40), xyz=st.text(max_size=60), alpha=st.text(max_size=8))
def test_qm9pack_row_parser(elements, xyz, alpha):
    row = {"Elements": elements, "XYZ_Ang": xyz, "Polarizability_bohr3": alpha}
    row.update({col: "1.0" for name, (col, _) in qm9.QM9PACK_PROPERTIES.items() if name != "alpha"})
    try:
        rec = qm9.parse_qm9pack_row(row, file="qm9_part1.csv", index=7)
        D.check_record(rec, file="qm9_part1.csv", index=7, elements=D.QM9_ELEMENTS)
    except PolydiffError as e:
        _check_error(e, "qm9_part1.csv")
        assert "record 7" in str(e)


@FUZZ
@given(text=_xyz_text)
def test_official_qm9_xyz_parser(text):
    try:
        qm9.parse_qm9_xyz(text, file="dsgdb9nsd_000009.xyz", index=3)
    except PolydiffError as e:
        _check_error(e, "dsgdb9nsd_000009.xyz")


def test_fuzz_checks_can_fail():
    """The property above is not vacuous: a known-bad row does raise, naming file and record."""
    with pytest.raises(InputError, match=r"qm9_part1.csv.*record 7"):
        qm9.parse_qm9pack_row({"Elements": "['C']", "XYZ_Ang": "[[0,0]]"}, file="qm9_part1.csv", index=7)
