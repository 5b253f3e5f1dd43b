"""Bonds and formal charges of QM9 molecules, perceived with RDKit and cached on disk.

QM9 ships atoms, DFT coordinates (Å) and one SMILES per molecule, but no bond table. The
joint model (:mod:`.joint`) learns bonds, so every training molecule needs one. Perception,
per molecule (:func:`perceive_bonds`):

1. **SMILES graph matched onto the 3-D atoms** (method ``"smiles"``). The SMILES is parsed
   with explicit hydrogens and kekulised; the 3-D connectivity comes from
   ``rdDetermineBonds.DetermineConnectivity`` (covalent radii; Kim & Kim 2015). The two
   graphs, both reduced to single bonds and neutral atoms, must agree (same atom
   counts and an element-preserving match of every SMILES bond onto a 3-D contact; of
   several such matches the one with the shortest total bond length). The SMILES's kekulé
   bond orders and formal charges are then copied onto the matched 3-D atoms. Contacts the
   SMILES does not bond are not bonds: QM9's bicyclo[1.1.1]- and [2.1.1]-systems have
   bridgehead C···C pairs at 1.8–1.95 Å that covalent radii would bond.
2. Where the graphs differ (the DFT geometry's connectivity is not the SMILES's, or the
   SMILES does not parse): **bond orders from the coordinates alone** (method
   ``"xyz2mol"``): ``rdDetermineBonds.DetermineBonds`` with total charge 0 (the xyz2mol
   algorithm, Kim & Kim 2015), which assigns kekulé orders and formal charges; accepted only
   when RDKit sanitises the result and it is one fragment without radicals.
3. Where both fail, the molecule is a **failure**: it is counted and reported by index
   (:attr:`BondTable.failures`), never dropped silently. A loader that needs bonds for it
   raises or skips it visibly (see :func:`attach_bonds`).

Bond classes are **kekulised**: 0 none, 1 single, 2 double, 3 triple (aromatic rings get a
kekulé structure from RDKit). Formal charges are kept as integers (QM9: −1, 0, +1).

The cache (``$POLYDIFF_CACHE/qm9_bonds_v1.npz``, numpy arrays only, no pickle) holds the
molecules perceived so far; a request perceives only the indices it lacks and writes the
merged table back atomically, so the 130,831 molecules are perceived once (about 3 ms
each on one CPU thread). Two processes extending the cache at once: the last write wins and
the other's additions are perceived again by a later request (repeated work, never a wrong
entry).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from polydiff.checkpoint import atomic_write_bytes
from polydiff.errors import InputError

#: bond classes of the joint model (kekulised)
BOND_CLASSES = ("none", "single", "double", "triple")
#: the cache's format version (part of its file name)
CACHE_VERSION = 1
STATUS = {0: "failed", 1: "smiles", 2: "xyz2mol"}
_STATUS_CODE = {v: k for k, v in STATUS.items()}


@dataclass
class PerceivedBonds:
    """One molecule's bonds: ``pairs`` ``[m, 2]`` int (i < j, atom indices in QM9's order),
    ``orders`` ``[m]`` int (1–3), ``charges`` ``[n]`` int formal charges, ``method``
    (``"smiles"`` / ``"xyz2mol"``) or ``"failed"`` with ``message``."""

    pairs: np.ndarray
    orders: np.ndarray
    charges: np.ndarray
    method: str
    message: str = ""

    def order_matrix(self, n: int) -> np.ndarray:
        """``[n, n]`` int bond orders (symmetric, zero diagonal)."""
        out = np.zeros((n, n), dtype=np.int64)
        if len(self.pairs):
            out[self.pairs[:, 0], self.pairs[:, 1]] = self.orders
            out[self.pairs[:, 1], self.pairs[:, 0]] = self.orders
        return out


def _xyz_mol(elements, positions):
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    mol = Chem.RWMol()
    for e in elements:
        mol.AddAtom(Chem.Atom(str(e)))
    conf = Chem.Conformer(len(elements))
    for k, p in enumerate(np.asarray(positions, dtype=np.float64).reshape(-1, 3)):
        conf.SetAtomPosition(k, Point3D(*map(float, p)))
    mol.AddConformer(conf, assignId=True)
    return mol.GetMol()


def _single_neutral(mol):
    """A copy with every bond single, no aromatic flags and neutral atoms (the bare graph)."""
    from rdkit import Chem

    m = Chem.RWMol(mol)
    for b in m.GetBonds():
        b.SetBondType(Chem.BondType.SINGLE)
        b.SetIsAromatic(False)
    for a in m.GetAtoms():
        a.SetFormalCharge(0)
        a.SetIsAromatic(False)
        a.SetNoImplicit(True)
        a.SetNumExplicitHs(0)
    out = m.GetMol()
    out.UpdatePropertyCache(strict=False)
    return out


def _from_mol(mol, n: int, method: str) -> PerceivedBonds:
    pairs, orders = [], []
    kinds = {1.0: 1, 2.0: 2, 3.0: 3}
    for b in mol.GetBonds():
        i, j = sorted((b.GetBeginAtomIdx(), b.GetEndAtomIdx()))
        o = kinds.get(b.GetBondTypeAsDouble())
        if o is None:
            raise ValueError(f"bond {i}-{j} has non-kekulé order {b.GetBondTypeAsDouble()}")
        pairs.append((i, j))
        orders.append(o)
    charges = np.array([a.GetFormalCharge() for a in mol.GetAtoms()], dtype=np.int64)[:n]
    return PerceivedBonds(
        np.array(pairs, dtype=np.int64).reshape(-1, 2), np.array(orders, dtype=np.int64), charges, method
    )


def _by_smiles(elements, positions, smiles: str) -> PerceivedBonds | None:
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    tmpl = Chem.MolFromSmiles(smiles)
    if tmpl is None:
        return None
    tmpl = Chem.AddHs(tmpl)
    Chem.Kekulize(tmpl, clearAromaticFlags=True)
    n = len(elements)
    if tmpl.GetNumAtoms() != n:
        return None
    xyz = Chem.Mol(_xyz_mol(elements, positions))
    rdDetermineBonds.DetermineConnectivity(xyz)
    if xyz.GetNumBonds() < tmpl.GetNumBonds():
        return None
    matches = _single_neutral(xyz).GetSubstructMatches(_single_neutral(tmpl), uniquify=False, maxMatches=64)
    if not matches:
        return None
    # of the element-preserving embeddings of the SMILES graph into the contact graph, the one
    # with the shortest total bond length (only differs from the others when the geometry has
    # extra contacts, e.g. the bridgehead pairs of bicyclo[1.1.1]pentanes at 1.8-1.95 A)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    ends = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in tmpl.GetBonds()], dtype=np.int64).reshape(-1, 2)

    def total_length(m):
        m = np.asarray(m)
        return float(np.linalg.norm(pos[m[ends[:, 0]]] - pos[m[ends[:, 1]]], axis=-1).sum())

    match = min(matches, key=total_length)
    # match[k] = the 3-D atom that template atom k sits on
    out = Chem.RWMol(_xyz_mol(elements, positions))
    for b in tmpl.GetBonds():
        out.AddBond(match[b.GetBeginAtomIdx()], match[b.GetEndAtomIdx()], b.GetBondType())
    for a in tmpl.GetAtoms():
        out.GetAtomWithIdx(match[a.GetIdx()]).SetFormalCharge(a.GetFormalCharge())
    return _from_mol(out, n, "smiles")


def _by_xyz(elements, positions) -> PerceivedBonds | None:
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    mol = Chem.Mol(_xyz_mol(elements, positions))
    try:
        rdDetermineBonds.DetermineBonds(mol, charge=0)
        Chem.SanitizeMol(mol)
        Chem.Kekulize(mol, clearAromaticFlags=True)
    except Exception:  # RDKit raises ValueError/RuntimeError subclasses for unassignable geometries
        return None
    # a QM9 molecule is one closed-shell fragment: anything else is no perception
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()) or len(Chem.GetMolFrags(mol)) != 1:
        return None
    return _from_mol(mol, len(elements), "xyz2mol")


def perceive_bonds(elements, positions, smiles: str | None = None) -> PerceivedBonds:
    """Bonds and formal charges of one molecule (see the module docstring for the order of
    methods). ``elements``: symbols ``[n]``; ``positions``: ``[n, 3]`` Å; ``smiles``: the
    molecule's SMILES (may be None). Never raises for a molecule it cannot perceive: the
    result then has ``method == "failed"`` and a ``message``."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    n = len(elements)
    try:
        res = _by_smiles(elements, positions, smiles) if smiles else None
        if res is None:
            res = _by_xyz(elements, positions)
    finally:
        RDLogger.EnableLog("rdApp.*")
    if res is None:
        why = "SMILES graph does not match the 3-D connectivity and xyz2mol found no bond orders"
        return PerceivedBonds(np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(n, np.int64), "failed", why)
    return res


# -- the table and its cache ----------------------------------------------------------------
@dataclass
class BondTable:
    """Perceived bonds of a set of QM9 molecules, by QM9 index (0-based, file order).

    ``by_index``: index → :class:`PerceivedBonds`; ``failures``: ``[(index, message)]`` of
    the molecules neither method could perceive (included in ``by_index`` with
    ``method == "failed"``)."""

    by_index: dict[int, PerceivedBonds] = field(default_factory=dict)

    @property
    def failures(self) -> list[tuple[int, str]]:
        return sorted((i, b.message) for i, b in self.by_index.items() if b.method == "failed")

    def counts(self) -> dict[str, int]:
        """Molecules per perception method (``smiles``, ``xyz2mol``, ``failed``)."""
        out = {m: 0 for m in STATUS.values()}
        for b in self.by_index.values():
            out[b.method] += 1
        return out

    def report(self) -> str:
        c = self.counts()
        lines = [
            f"{len(self.by_index)} QM9 molecules: {c['smiles']} by SMILES match, {c['xyz2mol']} by xyz2mol, "
            f"{c['failed']} failed"
        ]
        lines += [f"  index {i}: {m}" for i, m in self.failures[:20]]
        return "\n".join(lines)

    # -- npz (no pickle) ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        idx = np.array(sorted(self.by_index), dtype=np.int64)
        items = [self.by_index[int(i)] for i in idx]
        arrays = {
            "index": idx,
            "status": np.array([_STATUS_CODE[b.method] for b in items], dtype=np.int8),
            "bond_ptr": np.cumsum([0] + [len(b.orders) for b in items]).astype(np.int64),
            "pairs": np.concatenate([b.pairs for b in items] or [np.zeros((0, 2))]).astype(np.int16),
            "orders": np.concatenate([b.orders for b in items] or [np.zeros(0)]).astype(np.int8),
            "atom_ptr": np.cumsum([0] + [len(b.charges) for b in items]).astype(np.int64),
            "charges": np.concatenate([b.charges for b in items] or [np.zeros(0)]).astype(np.int8),
        }
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_file(cls, path) -> "BondTable":
        try:
            with np.load(path, allow_pickle=False) as z:
                a = {k: z[k] for k in ("index", "status", "bond_ptr", "pairs", "orders", "atom_ptr", "charges")}
        except (OSError, ValueError, KeyError) as e:
            raise InputError(f"unreadable QM9 bond cache ({e}); delete it to rebuild", file=path) from None
        out = cls()
        for k, i in enumerate(a["index"].tolist()):
            b0, b1 = a["bond_ptr"][k], a["bond_ptr"][k + 1]
            c0, c1 = a["atom_ptr"][k], a["atom_ptr"][k + 1]
            method = STATUS.get(int(a["status"][k]))
            if method is None:
                raise InputError(f"unknown status code {a['status'][k]}", file=path, record=i, field="status")
            out.by_index[int(i)] = PerceivedBonds(
                a["pairs"][b0:b1].astype(np.int64),
                a["orders"][b0:b1].astype(np.int64),
                a["charges"][c0:c1].astype(np.int64),
                method,
                "" if method != "failed" else "perception failed (cached)",
            )
        return out


def cache_path():
    from polydiff.cache import cache_root

    return cache_root() / f"qm9_bonds_v{CACHE_VERSION}.npz"


def qm9_bond_table(records) -> BondTable:
    """Perceived bonds for QM9 ``records`` (:class:`~.data.MoleculeRecord` with ``index`` and
    ``smiles``, as :func:`~.qm9.load_qm9` returns them), from the on-disk cache where present;
    the missing ones are perceived and the cache rewritten."""
    path = cache_path()
    table = BondTable.from_file(path) if path.is_file() else BondTable()
    missing = [r for r in records if int(r.index) not in table.by_index]
    for r in missing:
        if int(r.index) < 0:
            raise InputError("record has no QM9 index", record=r.name or None, field="index")
        b = perceive_bonds(r.elements, r.positions, r.smiles)
        if b.method == "failed":
            b.message = f"QM9 index {r.index} (SMILES {r.smiles!r}): {b.message}"
        table.by_index[int(r.index)] = b
    if missing:
        atomic_write_bytes(path, table.to_bytes())
    return table


def attach_bonds(dataset, *, on_error: str = "skip"):
    """Give every record of a QM9 dataset ``bonds`` (``[n, n]`` int kekulé orders) and
    ``charges`` (``[n]`` int formal charges) from :func:`qm9_bond_table`. Molecules whose
    perception failed are skipped and listed in ``dataset.skipped`` (``on_error="skip"``,
    with a warning naming their count and first index) or raise an :class:`InputError`
    (``"raise"``). Returns the dataset (modified in place)."""
    import warnings

    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    table = qm9_bond_table(dataset.records)
    kept = []
    for r in dataset.records:
        b = table.by_index[int(r.index)]
        if b.method == "failed":
            if on_error == "raise":
                raise InputError(b.message, file="qm9", record=r.index, field="bonds")
            dataset.skipped.append(("qm9", int(r.index), b.message))
            continue
        r.bonds = b.order_matrix(r.n_atoms)
        r.charges = b.charges.copy()
        r.bond_method = b.method
        kept.append(r)
    dropped = len(dataset.records) - len(kept)
    if dropped:
        first = next(s for s in dataset.skipped if s[0] == "qm9")
        warnings.warn(
            f"{dataset.name}: {dropped} molecule(s) without perceivable bonds skipped (first: QM9 index {first[1]})",
            stacklevel=2,
        )
    dataset.records = kept
    return dataset


def load_qm9_bonds(split: str = "train", *, limit: int | None = None, seed: int = 0, on_error: str = "skip", **options):
    """QM9 (:func:`~.qm9.load_qm9`: same splits, same seeded subsets) with perceived bonds and
    formal charges on every record (:func:`attach_bonds`; molecules whose perception failed
    are skipped and listed in ``dataset.skipped``, or raise with ``on_error="raise"``).
    ``remove_h`` is refused: the bond tables are for molecules with hydrogens."""
    from .qm9 import load_qm9

    if options.get("remove_h"):
        raise ValueError("qm9_bonds keeps hydrogens (bonds and valences are perceived with them); remove_h=False")
    options.pop("remove_h", None)
    data = load_qm9(split, limit=limit, seed=seed, **options)
    data.name = data.name.replace("qm9/", "qm9_bonds/")
    return attach_bonds(data, on_error=on_error)


def build_qm9_bond_cache() -> BondTable:
    """Perceive (or read from the cache) the bonds of all 130,831 QM9 molecules; the table's
    :meth:`BondTable.report` gives the counts per method and the failures by index.
    ``python -m polydiff.plugins.molecule.bonds_qm9`` runs it and prints the report."""
    from .qm9 import load_qm9

    return qm9_bond_table(load_qm9("all").records)


if __name__ == "__main__":
    print(build_qm9_bond_cache().report())
