"""What a conformance run found: :class:`Finding` per broken rule, one :class:`ConformanceReport`."""

from __future__ import annotations

from dataclasses import dataclass, field

from polydiff.errors import PluginError


@dataclass(frozen=True)
class Finding:
    """One broken rule: which ``check`` found it, on which ``component`` (``"modality
    'pointcloud'"``, ``"metric 'ring_error'"``), what is wrong and what to change."""

    check: str
    component: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.component}: {self.message}\n      fix: {self.fix}"


@dataclass
class ConformanceReport:
    """The findings of :func:`polydiff.testing.check_plugin` / ``check_modality``.

    ``passed`` lists ``(check, component)`` pairs that ran and held; ``skipped`` lists
    ``(check, component, reason)`` for checks that did not run (asked to skip, nothing to
    check, or a check they depend on failed). ``ok`` is true when nothing was found.
    """

    plugin: str
    findings: list[Finding] = field(default_factory=list)
    passed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def add(self, check: str, component: str, message: str, fix: str) -> Finding:
        f = Finding(check, component, message, fix)
        self.findings.append(f)
        return f

    def extend(self, other: "ConformanceReport") -> None:
        self.findings += other.findings
        self.passed += other.passed
        self.skipped += other.skipped

    def summary(self) -> str:
        """One paragraph per finding (the :class:`polydiff.errors.PluginError` message)."""
        if self.ok:
            return f"plugin {self.plugin!r} passes {len(self.passed)} conformance checks"
        n = len(self.findings)
        head = f"plugin {self.plugin!r} fails {n} conformance check{'s' if n != 1 else ''}:"
        return "\n".join([head] + [f"  {i}. {f}" for i, f in enumerate(self.findings, 1)])

    __str__ = summary

    def raise_if_failed(self) -> "ConformanceReport":
        """Raise one :class:`ConformanceError` (a :class:`polydiff.errors.PluginError`) listing
        every finding; return ``self`` when there is none."""
        if self.findings:
            raise ConformanceError(self)
        return self


class ConformanceError(PluginError):
    """A plugin fails the conformance kit; ``report`` holds the :class:`ConformanceReport`."""

    def __init__(self, report: ConformanceReport):
        super().__init__(report.summary())
        self.report = report
