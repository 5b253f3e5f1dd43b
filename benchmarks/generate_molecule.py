"""Wall time of ``polydiff.generate("molecule", n=100)`` — issue 18's "≤ 5 s on 2 cores".

Times the starter's card defaults, its 10-call tuned grid and the previous card (100 plain
steps on ``power:3``) side by side in one process, ``--repeats`` times each (seeds 0, 1, …),
after one warm-up call (starter load and plugin discovery), and prints min / median seconds::

    .venv/bin/python benchmarks/generate_molecule.py --threads 2 [--out runs/generate_molecule.json]

2026-12-03, quiet 2-core machine, 2 threads, median of 3: card 2.9 s, ``nfe=10`` 1.9 s,
previous card 23.8 s. A wall-clock number, so it moves with the machine's load (2–4× seen).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

#: label → generate() keywords
SETTINGS = {
    "card (15 calls with restarts)": {},
    "nfe=10 (tuned grid)": {"nfe": 10},
    "previous card (100 steps, power:3)": {"nfe": 100, "grid": "power:3"},
}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON file for the timings")
    a = p.parse_args(argv)

    import torch

    import polydiff

    torch.set_num_threads(a.threads)
    polydiff.generate("molecule", n=4)  # warm-up: load, plugin discovery
    out: dict = {"threads": a.threads, "n": a.n, "repeats": a.repeats, "seconds": {}}
    for label, kw in SETTINGS.items():
        times = []
        for rep in range(a.repeats):
            t = time.perf_counter()
            polydiff.generate("molecule", n=a.n, seed=rep, **kw)
            times.append(time.perf_counter() - t)
        out["seconds"][label] = {"min": min(times), "median": statistics.median(times), "all": times}
        print(f"{label}: {min(times):.2f} s min, {statistics.median(times):.2f} s median of {a.repeats}", flush=True)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
