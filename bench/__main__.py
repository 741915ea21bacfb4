"""`make bench`: runs every benchmark section and prints one JSON report.

Without DATABASE_URL the benchmarks use a fresh SQLite file under var/bench/ (migrated here);
with it, the given database.
Sections: BENCH_SECTIONS=probes,import,cases,letters,schedule,outbox,dashboard,scale,workers
(default: all).
Exits non-zero when a section fails or judges any target wrong (its `wrong_verdicts`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import platform
import resource
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {
    "probes": "bench.probe_bench",
    "import": "bench.import_bench",
    "cases": "bench.cases_bench",
    "letters": "bench.letters_bench",
    "schedule": "bench.schedule_bench",
    "outbox": "bench.outbox_bench",
    "dashboard": "bench.dashboard_bench",
    "scale": "bench.scale_bench",
    "workers": "bench.workers_bench",
}


def main() -> int:
    if not os.environ.get("DATABASE_URL"):
        bench_dir = ROOT / "var" / "bench"
        bench_dir.mkdir(parents=True, exist_ok=True)
        db = bench_dir / "bench.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        os.environ["DATABASE_URL"] = f"sqlite:///{db}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "true")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", "--noinput", verbosity=0)
    available = [n for n, m in SECTIONS.items() if importlib.util.find_spec(m) is not None]
    wanted = [n for n in os.environ.get("BENCH_SECTIONS", ",".join(available)).split(",") if n]
    report: dict[str, object] = {
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "database": os.environ["DATABASE_URL"].split("://")[0],
    }
    failed = False
    for name in wanted:
        module_name = SECTIONS[name.strip()]
        started = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
            report[name] = module.run()
        except Exception as exc:  # one broken section must not hide the others' figures
            failed = True
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
            traceback.print_exc(file=sys.stderr)
        print(f"bench: {name} took {time.perf_counter() - started:.1f}s", file=sys.stderr)
        section = report[name]
        wrong = section.get("wrong_verdicts") if isinstance(section, dict) else None
        if wrong:  # a wrong verdict is a failure however fast it came
            failed = True
            print(f"bench: FAILED: {name} judged {wrong} target(s) wrong", file=sys.stderr)
    report["peak_rss_mb_of_bench_process"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
