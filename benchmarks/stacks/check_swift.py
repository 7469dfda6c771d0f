"""ms-swift's own dataset loader, ``qwen2_vl`` template and GRPO reward calling on ``export swift``.

    python benchmarks/stacks/check_swift.py DATA   # DATA: what prepare.py wrote (run in the ms-swift venv)

Per export (grid, offset, multi-instance / caption rows): ``swift.dataset.load_dataset`` keeps
every row and its reward columns; ``get_processor`` + ``get_template(template_type="qwen2_vl")`` in
train mode encode each row: one image, its ``<|image_pad|>`` run as long as the template's own
``image_grid_thw`` asks, labels masking the prompt and holding exactly the answer. Then the GRPO
reward path as ``swift rlhf`` runs it: ``import_external_file`` loads
``getok_data/rewards/ms_swift/plugin.py``, ``orms["getok"]`` and its components are called as
``reward(completions, **RowPreprocessor.rows_to_batched(rows), trainer_state=...)``; the ground
truth must outscore a wrong answer, which must outscore garbage. Last line: one JSON object.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import ROOT, finish, setup, spatial_ids_are_single  # noqa: E402


def wrong_answer(row: dict) -> str:
    """A well-formed answer of the row's task that is not the truth (the grid's far corner)."""
    task, sol = row["task"], row["solution"]
    if row["stage"] == "offset":
        return sol.replace("<OFF_0_0>", "<DELETE>") if "<OFF_0_0>" in sol else sol.replace("<DELETE>", "<OFF_0_0>")
    far = "<grid_0_0>" if "<grid_0_0>" not in sol else "<grid_7_7>"
    return {"seg": f"<seg>{far}</seg>", "box": f"<box>{far}{far}</box>", "point": f"<point>{far}</point>",
            "points": f"<point>{far}</point>", "boxes": f"<box>{far}{far}</box>"}.get(task, "a thing")


def check(data: Path) -> dict:
    import swift
    from swift.dataset import RowPreprocessor, load_dataset
    from swift.model import get_processor
    from swift.rewards import orms
    from swift.template import get_template
    from swift.utils import import_external_file

    prepared, n, work, model = setup(data, "swift")
    processor = get_processor(str(model), model_type="qwen2_vl")
    tok = processor.tokenizer
    template = get_template(processor, template_type="qwen2_vl", max_length=2048)
    template.set_mode("train")
    # ms-swift's Qwen2-VL template names the placeholder by the real Qwen tokenizer's id (151655);
    # the tiny tokenizer has it elsewhere: point the template at it (the only tiny-model concession)
    template.image_token_id = tok.convert_tokens_to_ids("<|image_pad|>")
    template.video_token_id = tok.convert_tokens_to_ids("<|video_pad|>")
    pad, end = tok.convert_tokens_to_ids("<|image_pad|>"), tok.convert_tokens_to_ids("<|im_end|>")
    import_external_file(str(ROOT / "getok_data/rewards/ms_swift/plugin.py"))
    results = {"ms-swift": swift.__version__, "rewards": {}}
    for name in ("grid", "offset", "multi"):
        export = Path(prepared["exports"][f"swift_{name}"]["path"])
        raw = [json.loads(line) for line in export.read_text().splitlines()]
        ds, _ = load_dataset([str(export)], remove_unused_columns=False)
        assert len(ds) == len(raw)
        for row, want in zip(ds, raw):
            assert row["solution"] == want["solution"] and row["images"]
            enc = template.encode(dict(row))
            ids, labels = enc["input_ids"], enc["labels"]
            tokens = int(enc["image_grid_thw"][0].prod()) // processor.image_processor.merge_size ** 2
            assert ids.count(pad) == tokens, (ids.count(pad), tokens)
            first = next(k for k, v in enumerate(labels) if v != -100)
            assert pad not in ids[first:]
            answer = labels[first:]
            stop = answer.index(end)
            assert tok.decode(answer[:stop]) == want["messages"][-1]["content"]
        # GRPO: ms-swift drops the last assistant turn and passes the other columns to the rewards
        rows = [dict(r) for r in ds]
        kwargs = RowPreprocessor.rows_to_batched(rows)
        kwargs["trainer_state"] = None
        grades = {}
        for key in ("getok", "getok_points_f1", "getok_boxes_f1", "getok_mask_iou", "getok_box"):
            fn = orms[key](args=None)
            truth = fn([r["solution"] for r in rows], **kwargs)
            wrong = fn([wrong_answer(r) for r in rows], **kwargs)
            junk = fn(["no idea"] * len(rows), **kwargs)
            assert all(t >= w for t, w in zip(truth, wrong)) and all(w >= j for w, j in zip(wrong, junk)), key
            grades[key] = [round(sum(v) / len(v), 3) for v in (truth, wrong, junk)]
        results[name] = {"rows": len(ds), "image_tokens_per_image": tokens}
        results["rewards"][name] = grades
    assert all(grades[k][0] > grades[k][2] for k in ("getok",))
    results["spatial_tokens_single_ids"] = spatial_ids_are_single(tok, n)
    assert results["spatial_tokens_single_ids"]
    return results


if __name__ == "__main__":
    finish(check, "ms-swift")
