"""The ``results.json`` schema (documented in ``benchmarks/README.md``) and its validator.

Stable fields; tasks may add extra keys (``files``, ``losses``, …) which readers ignore.
"""

from __future__ import annotations

from numbers import Real

SCHEMA_VERSION = 1

TOP_FIELDS = {"polydiff_version": str, "suite": str, "device": str, "started": str, "tasks": list}
ROW_FIELDS = {
    "task": str,
    "modality": str,
    "model": str,
    "sampler": str,
    "nfe": int,
    "seed": int,
    "metrics": dict,
    "reference": dict,
    "timing": dict,
}
FAILED_FIELDS = {"task": str, "modality": str, "error": str}
#: optional top-level fields: checked when present
OPTIONAL_NUMBERS = ("wall_s", "time_limit_s", "jobs", "threads_per_task", "cores")
LOAD_FIELDS = ("load_avg_start", "load_avg_end")  # [1-min, 5-min, 15-min] load averages
TIME_FIELDS = {"task": str, "wall_s": Real, "phases": dict}  # task_times[] entries (cpu_s optional)


class SchemaError(ValueError):
    """``results.json`` does not follow the schema; the message names the path."""


def _check_fields(obj, fields, where):
    if not isinstance(obj, dict):
        raise SchemaError(f"{where}: expected an object")
    for k, t in fields.items():
        if k not in obj:
            raise SchemaError(f"{where}: missing field {k!r}")
        if t is int and isinstance(obj[k], bool) or not isinstance(obj[k], t):
            raise SchemaError(f"{where}.{k}: expected {t.__name__}, got {type(obj[k]).__name__}")


def _check_numbers(d, where):
    for k, v in d.items():
        if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, Real):
            raise SchemaError(f"{where}.{k}: expected a number, got {v!r}")


def _check_optional(obj: dict) -> None:
    for k in OPTIONAL_NUMBERS:
        if k in obj and (isinstance(obj[k], bool) or not isinstance(obj[k], Real)):
            raise SchemaError(f"$.{k}: expected a number, got {obj[k]!r}")
    for k in LOAD_FIELDS:
        if k in obj and not (
            isinstance(obj[k], list) and len(obj[k]) == 3 and all(isinstance(x, Real) for x in obj[k])
        ):
            raise SchemaError(f"$.{k}: expected three numbers (1, 5, 15-minute load averages), got {obj[k]!r}")
    for i, t in enumerate(obj.get("task_times", [])):
        _check_fields(t, TIME_FIELDS, f"$.task_times[{i}]")
        _check_numbers(t["phases"], f"$.task_times[{i}].phases")
        _check_numbers(t.get("phases_cpu", {}), f"$.task_times[{i}].phases_cpu")
        if "cpu_s" in t:
            _check_numbers({"cpu_s": t["cpu_s"]}, f"$.task_times[{i}]")


def validate_results(obj: dict) -> None:
    """Raise :class:`SchemaError` unless ``obj`` follows the results schema."""
    _check_fields(obj, TOP_FIELDS, "$")
    _check_optional(obj)
    for i, row in enumerate(obj["tasks"]):
        where = f"$.tasks[{i}]"
        if isinstance(row, dict) and "error" in row:
            _check_fields(row, FAILED_FIELDS, where)
            continue
        _check_fields(row, ROW_FIELDS, where)
        _check_numbers(row["metrics"], where + ".metrics")
        _check_numbers(row["timing"], where + ".timing")
        for ref, vals in row["reference"].items():
            if not isinstance(vals, dict):
                raise SchemaError(f"{where}.reference.{ref}: expected an object")
            _check_numbers(vals, f"{where}.reference.{ref}")
        for need in ("data", "untrained"):
            if need not in row["reference"]:
                raise SchemaError(f"{where}.reference: missing {need!r} row")
