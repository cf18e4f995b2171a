"""Run the MedPrep benchmarks: every Testing/bench/bench_*.py module, one table at the end.

Each module exposes `run(workdir: pathlib.Path, quick: bool) -> list[dict]`, one dict per result row
with the keys bench, case, ours_s, anchor, anchor_s, ratio, target, ok (and optionally unit, note);
`timing.row` builds them. Benchmarks are not tests: a missed target is reported, never fatal. The
exit code is non-zero only when a module itself fails.

    .venv/bin/python Testing/bench/run_bench.py [--quick] [--only NAME] [--keep]
"""
from __future__ import annotations

import argparse
import compileall
import datetime
import importlib.util
import json
import math
import os
import platform
import shutil
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
OUTPUT = ROOT / "bench-output"
COLUMNS = ["bench", "case", "ours", "anchor", "anchor value", "ratio", "target", "ok", "note"]


def discover(only: str | None) -> list[Path]:
    modules = sorted(HERE.glob("bench_*.py"))
    if only:
        modules = [m for m in modules if m.stem in (only, f"bench_{only}")]
    return modules


def load(path: Path):
    for folder in (HERE, HERE.parent):  # so that modules can `import timing` and `import proctree`
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compile_package() -> bool:
    """Byte-compile MedPrep's own packages, as pip does when it installs a wheel: measured is MedPrep
    as installed. Left to the editable install, Python caches each module on its first import,
    except where PYTHONDONTWRITEBYTECODE is set (as on the machine that made the committed record):
    every `medprep` process, and each worker pool's fork server, then compiles the modules it imports
    from source, 0.1-0.2 s of start-up that no installed copy pays."""
    return all(compileall.compile_dir(ROOT / name, quiet=1) for name in ("MedPrepLib", "MedPrepSample"))


def _fmt(value, unit: str = "s") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return f"{text} {unit}".strip()
    return str(value)


def cells(r: dict) -> list[str]:
    unit = r.get("unit", "s")
    ok = r.get("ok")
    return [r["bench"], r["case"], _fmt(r.get("ours_s"), unit), r.get("anchor") or "",
            _fmt(r.get("anchor_s"), unit), _fmt(r.get("ratio"), ""), r.get("target") or "",
            "info" if ok is None else _fmt(bool(ok)), r.get("note") or ""]


def text_table(rows: list[dict]) -> str:
    table = [COLUMNS] + [cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[dict]) -> str:
    out = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in cells(r)) + " |" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller cases, one timed run each")
    parser.add_argument("--only", metavar="NAME", help="run only bench_NAME.py (e.g. convert)")
    parser.add_argument("--keep", action="store_true", help="keep the work folders under bench-output/work")
    args = parser.parse_args(argv)

    modules = discover(args.only)
    if not modules:
        print(f"run_bench: no benchmark module matches {args.only!r} in {HERE}", file=sys.stderr)
        return 1
    rows: list[dict] = []
    failed: list[str] = []
    compiled = compile_package()
    started = time.time()
    load_before = os.getloadavg()[0]
    if load_before > (os.cpu_count() or 1) / 2:
        print(f"run_bench: load average {load_before:.1f} on {os.cpu_count()} cores: other processes "
              "are busy, timings will be noisy", file=sys.stderr)
    work_root = OUTPUT / "work"
    for path in modules:
        name = path.stem[len("bench_"):]
        workdir = work_root / name
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        print(f"== {name} ({'quick' if args.quick else 'full'}) ...", flush=True)
        t0 = time.time()
        try:
            new_rows = load(path).run(workdir, args.quick)
        except Exception:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            failed.append(name)
            new_rows = []
        print(f"   {name}: {len(new_rows)} rows in {time.time() - t0:.0f} s", flush=True)
        rows.extend(new_rows)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    print()
    print(text_table(rows))
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": args.quick,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
        "cpus": os.cpu_count(),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "duration_s": round(time.time() - started, 1),
        "failed_modules": failed,
        "bytecode": "compiled before the run" if compiled else "compiling failed: modules compiled per process",
    }
    OUTPUT.mkdir(exist_ok=True)
    with open(OUTPUT / "results.json", "w") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2)
        fh.write("\n")
    with open(OUTPUT / "results.md", "w") as fh:
        fh.write(f"# MedPrep benchmarks ({meta['date']}, {'quick' if args.quick else 'full'})\n\n")
        fh.write(markdown_table(rows) + "\n")
    print(f"\nwrote {OUTPUT / 'results.json'} and {OUTPUT / 'results.md'}")
    if not args.quick and not args.only and not failed:
        import results_doc  # the committed record and the README's figures come from full runs only

        results_doc.publish({"meta": meta, "rows": rows})
        print(f"wrote {results_doc.RESULTS_MD.relative_to(ROOT)} and the README's benchmark table")
    if failed:
        print(f"run_bench: benchmark module(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
