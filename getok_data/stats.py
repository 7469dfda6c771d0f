"""Dataset statistics, computed from the shard sidecars (never from a driver's memory)."""
from __future__ import annotations

import numpy as np



def summarize(sidecars: list[dict]) -> dict:
    """Images, targets, errors, tokens per mask, token IoU, region counts, bytes per image."""
    counts = np.array([c for s in sidecars for c in s["token_counts"]], float)
    ious = np.array([v for s in sidecars for v in s["token_ious"]], float)
    images = sum(s["images"] for s in sidecars)
    written = sum(s["images_written"] for s in sidecars)
    targets_seen = sum(s["targets_seen"] for s in sidecars)
    errors = sum(len(s["errors"]) for s in sidecars)
    total_bytes = sum(s["bytes"] for s in sidecars)

    def q(a: np.ndarray, p: float) -> float | None:
        return round(float(np.percentile(a, p)), 4) if len(a) else None

    return {
        "shards": len(sidecars),
        "images": images,
        "images_written": written,
        "targets": sum(s["targets"] for s in sidecars),
        "targets_seen": targets_seen,
        "targets_seg_null": sum(s["targets_seg_null"] for s in sidecars),
        "targets_no_target": sum(s.get("targets_no_target", 0) for s in sidecars),
        # below selection.min_token_iou (0 when it is off)
        "targets_low_quality": sum(s.get("targets_low_quality", 0) for s in sidecars),
        "errors": errors,
        # The share of targets that did not reach the shards (a lost image loses all of its).
        "error_rate": round(1 - sum(s["targets"] for s in sidecars) / targets_seen, 6) if targets_seen
        else (1.0 if errors else 0.0),
        "tokens_per_mask": {"mean": round(float(counts.mean()), 4) if len(counts) else None,
                            "p50": q(counts, 50), "p90": q(counts, 90)},
        "token_iou": {"mean": round(float(ious.mean()), 4) if len(ious) else None, "p10": q(ious, 10)},
        "regions": {c: sum(s["regions"][c] for s in sidecars) for c in "IRHF"},
        "bytes_per_image": round(total_bytes / written, 1) if written else None,
        "image_bytes_per_image": round(sum(s["image_bytes"] for s in sidecars) / written, 1) if written else None,
        "seconds": round(sum(s["seconds"] for s in sidecars), 3),
    }


def format_table(summary: dict) -> str:
    rows = []
    for k, v in summary.items():
        if isinstance(v, dict):
            v = "  ".join(f"{kk}={vv}" for kk, vv in v.items())
        rows.append((k, str(v)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
