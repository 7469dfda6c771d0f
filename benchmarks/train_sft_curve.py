"""SFT learning curve of the bundled trainer: steps vs synthetic-val mask gIoU and wall time.

Runs the default ``getok-data train sft`` (configs/train_sft.yaml) on the default synthetic train
build, with evaluations on the whole val build every ``--every`` steps (their time is excluded
from ``train_seconds``), plus the untrained model (``--steps 0``). Builds ``out/syn_train`` and
``out/syn_val`` first if missing (grid 16). Prints one JSON line.

    python benchmarks/train_sft_curve.py [--out out/bench] [--every 200]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import machine

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "getok_data.cli"]


def sh(args: list[str]) -> tuple[str, float]:
    """Run a CLI command; (its last stdout line, wall seconds)."""
    t = time.time()
    res = subprocess.run(CLI + args, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{res.stderr[-3000:]}")
    return res.stdout.strip().splitlines()[-1], time.time() - t


def ensure_builds(train: str, val: str, grid: int) -> dict:
    took = {}
    for split, out in (("train", train), ("val", val)):
        if not (ROOT / out / "manifest.json").exists():
            _, took[split] = sh(["build", "--src", "synthetic", "--split", split, "--grid", str(grid), "--out", out,
                                 "--no-progress", "--json"])
    return took


def eval_json(ckpt: str, data: str, rounds: int = 0) -> dict:
    line, _ = sh(["eval", "--ckpt", ckpt, "--data", data, "--refine-rounds", str(rounds)])
    return json.loads(line)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="out/bench")
    ap.add_argument("--train", default="out/syn_train")
    ap.add_argument("--val", default="out/syn_val")
    ap.add_argument("--every", type=int, default=200)
    args = ap.parse_args()
    build_s = ensure_builds(args.train, args.val, 16)
    os.makedirs(ROOT / args.out, exist_ok=True)
    untrained = f"{args.out}/sft0.pt"
    sh(["train", "sft", "--data", args.train, "--steps", "0", "--out", untrained, "--no-progress"])
    base = eval_json(untrained, args.val)

    ckpt = f"{args.out}/sft.pt"
    for p in (ROOT / ckpt, ROOT / f"{ckpt}.log.jsonl"):
        p.unlink(missing_ok=True)
    _, wall = sh(["train", "sft", "--data", args.train, "--val", args.val, "--eval-every", str(args.every),
                  "--eval-limit", "100000", "--out", ckpt, "--no-progress"])
    rows = [json.loads(x) for x in open(ROOT / f"{ckpt}.log.jsonl")]
    evals = [r for r in rows if r["event"] == "eval"]
    curve = [{"step": r["step"], "train_seconds": round(r["train_seconds"], 1),
              "mask_giou": round(r["val"]["mask_giou"], 4), "mask_ciou": round(r["val"]["mask_ciou"], 4),
              "box_acc50": round(r["val"]["box_acc50"], 4), "point_hit": round(r["val"]["point_hit"], 4)}
             for r in evals]
    curve.insert(0, {"step": 0, "train_seconds": 0.0, **{k: round(base[k], 4) for k in ("mask_giou", "mask_ciou", "box_acc50", "point_hit")}})
    final = curve[-1]
    t_start = next(r for r in rows if r["event"] == "start")
    result = {
        "benchmark": "train_sft_curve", "curve": curve, "untrained_giou": base["mask_giou"],
        "final_giou": final["mask_giou"], "gain_over_untrained": final["mask_giou"] - base["mask_giou"],
        "train_seconds": final["train_seconds"], "wall_seconds_with_evals": round(wall, 1),
        "evals": len(curve) - 1,
        # the default command (no periodic evaluations): the run minus the intermediate evaluations
        "wall_seconds_default": round(wall - sum(r["eval_seconds"] for r in evals[:-1]), 1),
        "n_val": base["n"], "params": t_start["params"],
        "steps": t_start["config"]["steps"], "build_seconds": build_s, "load_average": os.getloadavg(),
        "machine": machine(), "passes": final["mask_giou"] >= 0.5 and final["mask_giou"] - base["mask_giou"] >= 0.2,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
