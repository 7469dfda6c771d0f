"""Inputs every stack check reads, made with this checkout's getok-data (its own venv).

    python benchmarks/stacks/prepare.py OUT

Builds a synthetic set (grid 8, superpixel) and the HumanRef fixture (multi-instance rows), and
writes every export format of both: llamafactory (grid and offset rows), swift, trl, easyr1 and
verl parquet, plus ``points`` / ``cap`` rows. The model side (a tiny random Qwen2-VL and its
extended tokenizer) is built by each check in the stack's own venv, with the stack's own
transformers. Prints one JSON line: what was written.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from getok_data.config import load_config  # noqa: E402
from getok_data.export.registry import run_export  # noqa: E402
from pipelines.build import run_build  # noqa: E402


def main(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    builds = {
        "syn": {"name": "synthetic", "split": "train", "size": 3},
        "humanref": {"name": "humanref", "data_root": str(ROOT / "tests/fixtures/getok-data__own/humanref")},
    }
    for name, source in builds.items():
        run_build(load_config(None, {"source": source, "grid": {"n": 8}, "build": {"out": str(out / name)}}),
                  force=True, progress=False)
    ex = out / "exports"
    made = {}
    for fmt, suffix in (("llamafactory", "jsonl"), ("swift", "jsonl"), ("trl", "jsonl"), ("easyr1", "parquet"),
                        ("verl", "parquet")):
        for stage in ("grid", "offset"):
            path = ex / f"getok_{fmt}_{stage}.{suffix}"
            stats = run_export(fmt, str(out / "syn"), path, (stage,))
            made[f"{fmt}_{stage}"] = {"path": str(path), "rows": stats.rows}
        path = ex / f"getok_{fmt}_multi.{suffix}"
        stats = run_export(fmt, str(out / "humanref"), path, ("grid",), ("points", "boxes", "cap"))
        made[f"{fmt}_multi"] = {"path": str(path), "rows": stats.rows}
    summary = {"out": str(out), "grid_n": 8, "exports": made}
    (out / "prepared.json").write_text(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1] if len(sys.argv) > 1 else "out/stacks/data"))))
