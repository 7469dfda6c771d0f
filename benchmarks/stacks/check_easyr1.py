"""EasyR1's own ``RLHFDataset`` and reward-function loader on ``export easyr1`` (run in the EasyR1 venv,
with ``EASYR1_SRC`` on ``PYTHONPATH``: EasyR1 is not on PyPI; run.sh sets it).

    python benchmarks/stacks/check_easyr1.py DATA   # DATA: what prepare.py wrote

Per export (grid, offset, multi-instance / caption rows): ``verl.utils.dataset.RLHFDataset`` (EasyR1's)
with ``prompt_key=problem``, ``answer_key=answer``, ``image_key=images`` reads every row: the
``<image>`` split into an image part, the image decoded from the parquet bytes, as many
``<|image_pad|>`` as the processor's ``image_grid_thw`` asks, the JSON ground truth passed on as
``ground_truth``. Rewards as ``worker.reward.reward_function=PATH:compute_score`` wires them:
``AutoRewardManager`` loads ``getok_data/rewards/easyr1.py`` by path, reads its ``REWARD_TYPE``
and calls it on a ``DataProto`` of responses (decoded with ``skip_special_tokens=True``, its
default); every score holds ``overall``, ``format`` and ``accuracy``; the ground truth must
outscore a wrong answer, which must outscore garbage. Last line: one JSON object.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_swift import wrong_answer  # noqa: E402
from model import ROOT, finish, response_batch, setup, spatial_ids_are_single  # noqa: E402


def check(data: Path) -> dict:
    import numpy as np
    import pyarrow.parquet as pq
    from transformers import AutoProcessor

    import verl  # EasyR1's package (EASYR1_SRC), not PyPI's verl
    from verl.protocol import DataProto
    from verl.utils.dataset import RLHFDataset, process_image
    from verl.workers.reward import AutoRewardManager, RewardConfig

    prepared, n, work, model = setup(data, "easyr1")
    processor = AutoProcessor.from_pretrained(model)
    tok = processor.tokenizer
    config = RewardConfig(reward_function=f"{ROOT / 'getok_data/rewards/easyr1.py'}:compute_score")
    config.post_init()
    manager = AutoRewardManager(config, tok)
    pad, eos = tok.convert_tokens_to_ids("<|image_pad|>"), tok.convert_tokens_to_ids("<|im_end|>")
    results = {"easyr1": verl.__version__, "reward_type": manager.reward_type, "rewards": {}}
    for name in ("grid", "offset", "multi"):
        path = prepared["exports"][f"easyr1_{name}"]["path"]
        raw = pq.read_table(path).to_pylist()
        ds = RLHFDataset(path, tok, processor, prompt_key="problem", answer_key="answer", image_key="images",
                         max_prompt_length=1024, filter_overlong_prompts=False)
        assert len(ds) == len(raw)
        merge = processor.image_processor.merge_size ** 2
        items = [ds[k] for k in range(len(ds))]
        for item, row in zip(items, raw):
            (image,) = item["multi_modal_data"]["images"]
            grid = processor.image_processor(images=[process_image(image, None, None)], return_tensors="pt")["image_grid_thw"]
            want = int(grid[0].prod()) // merge
            assert item["input_ids"].tolist().count(pad) == want, (item["input_ids"].tolist().count(pad), want)
            assert item["ground_truth"] == row["answer"]
        grades = []
        for answers in ([r["solution"] for r in raw], [wrong_answer(r) for r in raw], ["no idea"] * len(raw)):
            responses, mask = response_batch(tok, answers, eos)
            proto = DataProto.from_dict(
                tensors={"responses": responses, "response_mask": mask},
                non_tensors={"ground_truth": np.array([i["ground_truth"] for i in items], dtype=object)})
            rewards, metrics = manager.compute_reward(proto)
            assert {"overall", "format", "accuracy"} <= set(metrics) and len(metrics["overall"]) == len(raw)
            grades.append(rewards.sum(dim=1).tolist())
        truth, wrong, junk = grades
        assert all(t >= w >= j for t, w, j in zip(truth, wrong, junk)), (truth, wrong, junk)
        assert sum(truth) > sum(junk)
        results[name] = {"rows": len(ds), "image_tokens_per_image": want}
        results["rewards"][name] = [round(sum(v) / len(v), 3) for v in grades]
    results["spatial_tokens_single_ids"] = spatial_ids_are_single(tok, n)
    assert results["spatial_tokens_single_ids"]
    return results


if __name__ == "__main__":
    finish(check, "easyr1")
