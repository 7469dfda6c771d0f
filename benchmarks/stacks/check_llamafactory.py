"""LLaMA-Factory's own loader and ``qwen2_vl`` template on ``export llamafactory`` (run in its venv).

    python benchmarks/stacks/check_llamafactory.py DATA   # DATA: what prepare.py wrote

For each export (grid rows, offset rows, multi-instance / caption rows): ``get_train_args`` with the
export's own ``dataset_info.json``, ``load_tokenizer``, ``get_template_and_fix_tokenizer`` and
``get_dataset(stage="sft")``, as ``llamafactory-cli train`` runs them; then, per encoded row: one
image resolved and one ``<|vision_start|>`` per image with its ``<|image_pad|>`` run as long as the
processor asks, labels masking the whole prompt and holding exactly the answer (plus the template's
end of turn), spatial tokens single ids. Prints the findings and a last JSON line.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import finish, setup, spatial_ids_are_single  # noqa: E402


def check(data: Path) -> dict:
    import llamafactory
    from llamafactory.data import MultiModalDataCollatorForSeq2Seq, get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    prepared, n, work, model = setup(data, "lf")
    results = {"llamafactory": llamafactory.__version__}
    for name in ("grid", "offset", "multi"):
        export = Path(prepared["exports"][f"llamafactory_{name}"]["path"])
        rows = [json.loads(line) for line in export.read_text().splitlines()]
        args = {"model_name_or_path": str(model), "stage": "sft", "do_train": True, "finetuning_type": "full",
                "dataset": export.stem, "dataset_dir": str(export.parent), "template": "qwen2_vl",
                "cutoff_len": 1024, "output_dir": str(work / "out"), "overwrite_cache": True,
                "preprocessing_num_workers": 1, "report_to": "none", "image_max_pixels": 56 * 56}
        model_args, data_args, training_args, _, _ = get_train_args(args)
        tm = load_tokenizer(model_args)
        tok, processor = tm["tokenizer"], tm["processor"]
        template = get_template_and_fix_tokenizer(tok, data_args)
        ds = get_dataset(template, model_args, data_args, training_args, stage="sft", **tm)["train_dataset"]
        assert len(ds) == len(rows), (len(ds), len(rows))
        vs, pad, end = (tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|image_pad|>", "<|im_end|>"))
        merge = processor.image_processor.merge_size ** 2
        # LLaMA-Factory's own collator turns the images into the model's inputs: the placeholder run
        # in each row must be as long as the image tokens it feeds the model
        collator = MultiModalDataCollatorForSeq2Seq(template=template, processor=processor, tokenizer=tok,
                                                    label_pad_token_id=-100)
        for row, enc in zip(rows, ds):
            ids, labels = enc["input_ids"], enc["labels"]
            assert len(enc["images"]) == 1 and Path(enc["images"][0]).is_file(), enc["images"]
            batch = collator([dict(enc)])
            want = int(batch["image_grid_thw"][0].prod()) // merge
            assert ids.count(vs) == 1 and ids.count(pad) == want, (ids.count(vs), ids.count(pad), want)
            assert batch["input_ids"][0].tolist().count(pad) == want
            first = next(k for k, v in enumerate(labels) if v != -100)
            assert all(v == -100 for v in labels[:first]) and pad not in ids[first:]  # the prompt is masked
            answer = [v for v in labels[first:] if v != -100]
            stop = answer.index(end)  # the template ends the turn with <|im_end|> and a newline
            assert tok.decode(answer[:stop]) == row["messages"][-1]["content"], tok.decode(answer[:stop])
            assert tok.decode(answer[stop + 1:]).strip() == ""
            spatial = [t for t in tok.convert_ids_to_tokens(answer) if t.startswith(("<grid_", "<OFF_", "<DELETE"))]
            assert len(spatial) == row["messages"][-1]["content"].count("<grid_") + \
                row["messages"][-1]["content"].count("<OFF_") + row["messages"][-1]["content"].count("<DELETE>")
        results[name] = {"rows": len(ds), "image_tokens_per_image": want,
                         "example_input": tok.decode(ds[0]["input_ids"])[:400]}
    results["spatial_tokens_single_ids"] = spatial_ids_are_single(tok, n)
    assert results["spatial_tokens_single_ids"]
    return results


if __name__ == "__main__":
    finish(check, "llamafactory")
