"""Metrics on the kit's own samples (check ``metrics``).

Each metric registered for the modality (by the plugin under test) runs through
``Modality.evaluate(samples, metrics=[name])`` — so a modality's own ``evaluate`` can supply
defaults such as a reference or a classifier — first with ``reference=None``, then, if the
metric refuses (``ValueError``/``LookupError``: "needs a reference", "needs labels"), with the
samples as their own reference. A metric that refuses both is *not applicable* to the kit's
samples (listed in ``report.skipped``); any other exception, or a value that is not a finite
float, is a finding. The same metric on the samples read back from files must agree (within
5 %, the files' quantisation): otherwise ``write``/``read`` lose what the metric reads.
"""

from __future__ import annotations

import math

from .modality import REFUSALS, SKIPPED, describe

AGREEMENT = 0.05


def _value(run, samples, name, reference):
    out = run.mod.evaluate(samples, reference=reference, metrics=[name])
    return float(out[name])


def check_metrics(run):
    from polydiff.plugin_manager import registry

    entries = [
        e
        for e in registry("metric")
        if e.info.get("modality") == run.name and (run.plugin is None or e.plugin == run.plugin)
    ]
    if not entries:
        run.rep.skipped.append(("metrics", run.comp, "no metric is registered for this modality"))
        return SKIPPED
    ok, ran, refused = True, 0, 0
    for e in entries:
        comp = f"metric {e.name!r}"
        if e.name in run.opts.skip_metrics:
            run.rep.skipped.append(("metrics", comp, "listed in skip_metrics"))
            continue
        value, mode, refusals = None, None, []
        for mode in ("none", "self"):
            try:
                value = _value(run, run.samples, e.name, None if mode == "none" else run.samples)
                break
            except REFUSALS as err:
                refusals.append(describe(err, 160))
            except Exception as err:
                run.fail(
                    "metrics",
                    f"evaluate(samples, metrics=[{e.name!r}]) raised {describe(err)} on {len(run.samples)} decoded "
                    "samples",
                    "a metric must take the objects decode() returns, f(samples, reference=None, **options) -> float; "
                    "raise ValueError naming what is missing when it cannot compute",
                    comp,
                )
                ok = False
                break
        else:
            run.rep.skipped.append(("metrics", comp, "not applicable to the kit's samples: " + " / ".join(refusals)))
            refused += 1
            continue
        if value is None:
            continue
        if not math.isfinite(value):
            run.fail("metrics", f"returned {value} on the kit's samples", "return a finite float", comp)
            ok = False
            continue
        ran += 1
        run.rep.passed.append(("metrics", comp))
        back = getattr(run, "back", None)
        if back is None:
            continue
        try:
            again = _value(run, back, e.name, None if mode == "none" else back)
        except Exception as err:
            run.fail(
                "files",
                f"metric {e.name!r} runs on the decoded samples but raises {describe(err)} on the files read back",
                "read must return the objects decode returns, with everything the metrics read",
            )
            ok = False
            continue
        if abs(again - value) > AGREEMENT * max(1.0, abs(value)):
            run.fail(
                "files",
                f"metric {e.name!r} is {value:.4g} on the decoded samples but {again:.4g} on the files read back",
                "write must store everything the metrics read (coordinates, labels, conditioning) and read must "
                "restore it",
            )
            ok = False
    if ran == 0 and refused and ok:
        run.fail(
            "metrics",
            "no metric of the modality runs on the kit's samples (all refused: see report.skipped)",
            "declare conformance = {'sample_cond': {...}} so the kit samples what the metrics need (labels…), "
            "or skip_metrics for the ones that need external data",
        )
        ok = False
    return ok
