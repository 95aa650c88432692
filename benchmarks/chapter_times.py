"""Every chapter's wall time and peak memory, as a learner would see them: on this machine's cores,
and under mybinder.org's limits (a 1-CPU quota, 2 GiB).

Each notebook runs top to bottom in a fresh kernel through :func:`ptlearn.execute.execute_notebook`,
exactly as the notebook tests run it. Results go to ``benchmarks/results/chapters.json``, one
table per setting ("cores": no limits, all of this machine's cores; "binder": inside a cgroup with
Binder's limits), which ``benchmarks/report.py`` puts in RESULTS.md.

    python benchmarks/chapter_times.py                       # every chapter, no limits
    python benchmarks/chapter_times.py --binder 04 12        # two chapters under Binder's limits
    python benchmarks/chapter_times.py --import-report build/executed/report.json
        # store a test run's timings instead (the CI runs every chapter under Binder's limits)

Without a cgroup the peak is the kernel process's own high-water mark (VmHWM); inside one it is
the cgroup's, which also counts any process the kernel starts. Time a chapter on an idle machine:
anything else running slows it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import tempfile
from pathlib import Path

from ptlearn.execute import binder_limits, execute_notebook

HERE = Path(__file__).resolve().parent
NOTEBOOKS = sorted((HERE.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))
RESULTS = HERE / "results" / "chapters.json"


def record(report: dict) -> dict:
    """The fields of an execution report that the table needs."""
    keep = ("seconds", "peak_mib", "peak_source", "limits", "error")
    return {k: report.get(k) for k in keep}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chapters", nargs="*", help="two-digit chapter numbers (default: all)")
    parser.add_argument("--binder", action="store_true", help="under Binder's limits")
    parser.add_argument("--import-report", type=Path, help="a test run's report.json to store")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = json.loads(args.out.read_text()) if args.out.is_file() else {}
    today = datetime.date.today().isoformat()
    if args.import_report:
        runs = json.loads(args.import_report.read_text())
        setting = "binder" if all("quota" in r["limits"] for r in runs.values()) else "cores"
        table = {name: record(r) for name, r in runs.items()}
        source = "imported from tests/test_notebooks.py's report.json (e.g. a CI run)"
    else:
        setting = "binder" if args.binder else "cores"
        wanted = set(args.chapters)
        paths = [p for p in NOTEBOOKS if not wanted or p.name[:2] in wanted]
        table, out_dir = {}, Path(tempfile.mkdtemp(prefix="ptlearn-chapters-"))
        for path in paths:
            limits = binder_limits() if args.binder else None
            report = execute_notebook(path, out_dir / path.name, cgroup=limits)
            table[path.name] = record(vars(report))
            print(report.line(), flush=True)
        source = "benchmarks/chapter_times.py" + (" --binder" if args.binder else "")
    results[setting] = {
        "date": today,
        "source": source,
        "cpu_count": os.cpu_count(),
        # for an import, the load of this process's machine now says nothing about that run
        "load_average_at_end": None
        if args.import_report
        else [round(x, 2) for x in os.getloadavg()],
        "chapters": {**results.get(setting, {}).get("chapters", {}), **table},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
