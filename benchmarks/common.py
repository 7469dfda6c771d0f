"""Shared helpers for the benchmark scripts: machine description, timing, recording results."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def machine() -> dict:
    import numpy
    info = {"python": platform.python_version(), "numpy": numpy.__version__, "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine()}
    try:
        import torch
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return info


def best_of(fn, repeat: int = 5, number: int = 1) -> float:
    """Best wall time per call over ``repeat`` rounds of ``number`` calls (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


def record(name: str, result: dict, notes: str = "") -> None:
    """Print one JSON line and append a section to docs/BENCHMARKS.md."""
    result = {"benchmark": name, **result, "machine": machine(),
              "command": "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]),
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    print(json.dumps(result))
    if os.environ.get("GETOK_BENCH_NO_DOC"):
        return
    with open(DOC, "a") as f:
        f.write(f"\n### {name} ({result['date']})\n\n")
        if notes:
            f.write(notes.strip() + "\n\n")
        f.write("```json\n" + json.dumps(result, indent=1) + "\n```\n")
