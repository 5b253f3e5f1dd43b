"""The out-of-tree example plugin passes the conformance kit (step 0 of the plugin guide),
with the options it declares itself (``PointCloudModality.conformance``)."""

from __future__ import annotations

from polydiff.testing import CHECKS, check_plugin


def test_example_plugin_conforms(tmp_path):
    rep = check_plugin("polydiff_pointcloud", tmp_dir=tmp_path)
    assert rep.plugin == "pointcloud"
    assert {check for check, _ in rep.passed} == set(CHECKS)
    assert ("equivariance", "modality 'pointcloud'") in rep.passed  # declared: permutation
    assert ("benchmark", "benchmark 'pointcloud/rings8'") in rep.passed  # smoke budget


def _hookspec_table() -> dict[str, str]:
    """hook → its row in polydiff.hookspecs' docstring table, RST roles turned into Markdown."""
    import re

    from polydiff import hookspecs

    lines = hookspecs.__doc__.split("\n")
    rules = [i for i, line in enumerate(lines) if line.startswith("====")]
    rows: dict[str, str] = {}
    hook = None
    for line in lines[rules[1] + 1 : rules[2]]:
        head, text = line[:38].strip(), line[38:].strip()
        if head:
            hook = head
            rows[hook] = text
        else:
            rows[hook] += " " + text
    return {h: re.sub(r":\w+:`~?([^`]+)`", r"`\1`", t).replace("``", "`") for h, t in rows.items()}


def test_guide_hook_table_matches_hookspecs():
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "examples" / "pointcloud" / "README.md").read_text()
    rows = {}
    for line in guide.splitlines():
        if line.startswith("| `polydiff_"):
            cells = [c.strip() for c in line.replace("\\|", "\0").strip("|").split(" | ")]
            rows[cells[0].strip("`").split("(")[0]] = cells[1].replace("\0", "|")
    for hook, text in _hookspec_table().items():
        assert rows.get(hook) == text, f"the guide's row for {hook} differs from polydiff.hookspecs:\n{text}"
