"""verl's own ``RLHFDataset`` and reward path on ``export verl`` (run in the verl venv).

    python benchmarks/stacks/check_verl.py DATA   # DATA: what prepare.py wrote

Per export (grid, offset, multi-instance / caption rows): ``verl.utils.dataset.rl_dataset.RLHFDataset``
with the Qwen2-VL processor reads every row: the image decoded from the parquet bytes, one
``<|vision_start|>`` and as many ``<|image_pad|>`` as the processor's ``image_grid_thw`` asks.
Rewards as ``main_ppo`` wires them: ``reward.custom_reward_function.{path,name}`` loaded by
``get_custom_reward_fn`` and called by ``NaiveRewardManager`` on a ``DataProto`` of prompt and
response ids (it decodes with ``skip_special_tokens=True``: normal spatial tokens survive); the
ground truth must outscore a wrong answer, which must outscore garbage. Last line: one JSON object.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_swift import wrong_answer  # noqa: E402
from model import ROOT, finish, response_batch, setup, spatial_ids_are_single  # noqa: E402


def check(data: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    import torch
    import verl
    from omegaconf import OmegaConf
    from transformers import AutoProcessor
    from verl import DataProto
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.workers.reward_manager.naive import NaiveRewardManager

    prepared, n, work, model = setup(data, "verl")
    processor = AutoProcessor.from_pretrained(model)
    tok = processor.tokenizer
    cfg = OmegaConf.create({"reward": {"custom_reward_function": {
        "path": str(ROOT / "getok_data/rewards/verl.py"), "name": "compute_score"}}})
    manager = NaiveRewardManager(tok, num_examine=0, compute_score=get_custom_reward_fn(cfg))
    vs, pad, eos = (tok.convert_tokens_to_ids(t) for t in ("<|vision_start|>", "<|image_pad|>", "<|im_end|>"))
    results = {"verl": verl.__version__, "rewards": {}}
    for name in ("grid", "offset", "multi"):
        path = prepared["exports"][f"verl_{name}"]["path"]
        raw = pq.read_table(path).to_pylist()
        ds = RLHFDataset(data_files=[path], tokenizer=tok, processor=processor,
                         config=OmegaConf.create({"prompt_key": "prompt", "image_key": "images",
                                                  "max_prompt_length": 1024, "filter_overlong_prompts": False,
                                                  "cache_dir": str(work / "cache"), "return_raw_chat": True}))
        assert len(ds) == len(raw)
        items = [ds[k] for k in range(len(ds))]
        merge = processor.image_processor.merge_size ** 2
        prompts = []
        for item in items:  # what verl 0.9's AgentLoop does with a row's raw_prompt
            images, _ = asyncio.run(RLHFDataset.process_vision_info(item["raw_prompt"],
                                                                   processor.image_processor.patch_size, None))
            text = processor.apply_chat_template(item["raw_prompt"], tokenize=False, add_generation_prompt=True)
            inputs = processor(text=[text], images=images, return_tensors="pt")
            ids = inputs["input_ids"][0].tolist()
            want = int(inputs["image_grid_thw"][0].prod()) // merge
            assert len(images) == 1 and ids.count(vs) == 1 and ids.count(pad) == want, (ids.count(pad), want)
            prompts.append(ids)
        width = max(len(p) for p in prompts)  # left padded, as verl batches prompts
        batch = {"input_ids": torch.tensor([[tok.pad_token_id] * (width - len(p)) + p for p in prompts]),
                 "attention_mask": torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])}
        grades = []
        for answers in ([r["reward_model"]["ground_truth"] for r in raw], [wrong_answer(r["extra_info"]) for r in raw],
                        ["no idea"] * len(raw)):
            responses, resp_mask = response_batch(tok, answers, eos)
            proto = DataProto.from_dict(
                tensors={"prompts": batch["input_ids"], "responses": responses,
                         "attention_mask": torch.cat([batch["attention_mask"], resp_mask], dim=1)},
                non_tensors={k: np.array([r[k] for r in raw], dtype=object)
                             for k in ("data_source", "reward_model", "extra_info")})
            out = manager(proto, return_dict=True)
            grades.append(out["reward_tensor"].sum(dim=1).tolist())
        truth, wrong, junk = grades
        assert all(t >= w >= j for t, w, j in zip(truth, wrong, junk)), (truth, wrong, junk)
        assert sum(truth) > sum(junk)
        results[name] = {"rows": len(ds), "image_tokens_per_image": want}
        results["rewards"][name] = [round(sum(v) / len(v), 3) for v in grades]
    results["spatial_tokens_single_ids"] = spatial_ids_are_single(tok, n)
    assert results["spatial_tokens_single_ids"]
    return results


if __name__ == "__main__":
    finish(check, "verl")
