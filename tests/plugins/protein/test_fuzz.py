"""Hostile input: random garbling of PDB text gives a result or an InputError that names
the file and a record — never another exception, never a hang."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polydiff.errors import InputError
from polydiff.plugins.protein.structures import LoadReport, load_backbones

BASE = (
    "\n".join(
        f"ATOM  {4 * k + j + 1:5d}  {n:<3} ALA A{k + 1:4d}    {3.8 * k + dx:8.3f}{dy:8.3f}{0.0:8.3f}  1.00 20.00           {n[0]}"  # noqa: E501
        for k in range(5)
        for j, (n, dx, dy) in enumerate((("N", -1.0, 0.5), ("CA", 0.0, 0.0), ("C", 1.0, 0.4), ("O", 1.2, 1.5)))
    )
    + "\nEND\n"
)


def _check(tmp_path_factory, text, name="fuzz.pdb"):
    p = tmp_path_factory.mktemp("fz") / name
    p.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    for mode in ("raise", "skip"):
        rep = LoadReport()
        try:
            out = load_backbones(p, on_error=mode, report=rep)
        except InputError as e:
            assert mode == "raise"
            assert name in str(e) and e.file is not None and e.record is not None
            continue
        if mode == "skip":
            # everything either came out or was counted
            assert out or rep.skipped or rep.filtered_length


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, len(BASE) - 1), junk=st.text(min_size=1, max_size=12))
def test_garbled_pdb_text(tmp_path_factory, pos, junk):
    _check(tmp_path_factory, BASE[:pos] + junk + BASE[pos + len(junk) :])


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(0, len(BASE)), drop=st.lists(st.integers(0, 21), max_size=6))
def test_truncated_or_missing_lines(tmp_path_factory, cut, drop):
    lines = BASE[:cut].splitlines()
    lines = [ln for k, ln in enumerate(lines) if k not in set(drop)]
    _check(tmp_path_factory, "\n".join(lines) + "\n")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_random_bytes_as_mmcif_and_gz(tmp_path_factory, data):
    _check(tmp_path_factory, data, "fuzz.cif")
    _check(tmp_path_factory, data, "fuzz.pdb.gz")
