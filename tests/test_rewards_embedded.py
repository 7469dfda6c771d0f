"""EasyR1 and verl reward functions, called exactly as those frameworks call them, on exported rows.

EasyR1 (verl/workers/reward/function.py): ``partial(compute_score, **reward_function_kwargs)``
called with a list of ``{"response", "response_length", "ground_truth"}`` (batch) or one such
dict (sequential); reads ``score["overall"]`` and logs every key. verl (NaiveRewardManager):
``compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=...)``; a dict
return holds ``score``. Ground truth comes only from the row (read back from the parquet).
"""
from __future__ import annotations

import importlib.util
import re
import sys
from functools import partial

import numpy as np
import pyarrow.parquet as pq
import pytest

from getok_data.export import run_export
from getok_data.rewards import easyr1, verl
from getok_data.rewards.embedded import KEYS, floor

N = 8
GARBAGE = ["", "I cannot see it.", "<seg><grid_99_99></seg>", "<offset><box></box>"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, list[dict]]:
    from getok_data.config import load_config
    from pipelines.build import run_build

    root = tmp_path_factory.mktemp("emb")
    run_build(load_config(None, {"source": {"name": "synthetic", "size": 3}, "grid": {"n": N},
                                 "build": {"out": str(root / "b"), "images_per_shard": 3}}), progress=False)
    out = {}
    for fmt in ("easyr1", "verl"):
        run_export(fmt, str(root / "b"), root / f"{fmt}.parquet", ("grid", "offset"))
        out[fmt] = pq.read_table(root / f"{fmt}.parquet").to_pandas().to_dict("records")  # as the workers see them
    return out


def _shifted(answer: str) -> str:
    """The answer with every grid token moved one cell (a wrong but well-formed answer)."""
    return re.sub(r"<grid_(\d+)_(\d+)>", lambda m: f"<grid_{(int(m[1]) + 1) % N}_{m[2]}>", answer)


def _offset_wrong(answer: str) -> str:
    return answer.replace("<DELETE>", "<OFF_0_0>") if "<DELETE>" in answer else answer.replace("<OFF_0_0>", "<DELETE>")


def _load_by_path(module) -> object:
    """Load the reward file the way EasyR1's FunctionRewardManager and verl's custom_reward_function do."""
    spec = importlib.util.spec_from_file_location("custom_reward_fn", module.__file__)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules["custom_reward_fn"] = loaded
    spec.loader.exec_module(loaded)
    return loaded


def test_easyr1_batch_and_sequential(exported):
    rows = exported["easyr1"]
    fn = partial(_load_by_path(easyr1).compute_score)  # FunctionRewardManager wraps it with the configured kwargs
    gt = np.array([r["answer"] for r in rows], dtype=object)  # non_tensor_batch["ground_truth"]
    truth = fn([{"response": r["solution"] + "<|im_end|>", "response_length": 5, "ground_truth": gt[i]}
                for i, r in enumerate(rows)])
    assert len(truth) == len(rows)
    assert all(set(s) == set(KEYS) | {"overall", "accuracy"} and all(isinstance(v, float) for v in s.values())
               for s in truth)  # one key set for every row: metric lists stay as long as the batch
    for i, r in enumerate(rows):
        others = [_shifted(r["solution"]), _offset_wrong(r["solution"])] + GARBAGE
        scores = fn([{"response": o, "response_length": 3, "ground_truth": gt[i]} for o in others])
        assert truth[i]["overall"] >= max(s["overall"] for s in scores), r["id"]
        assert truth[i]["format"] == 1.0
        low = floor(gt[i])
        assert all(s["overall"] == low for s in scores[-len(GARBAGE):]), r["id"]  # garbage: the floor
        assert min(s["overall"] for s in scores) >= low
    one = fn({"response": rows[0]["solution"], "response_length": 3, "ground_truth": gt[0]})
    assert one == {k: v for k, v in truth[0].items()}
    assert {floor(g) for g in gt} >= {0.0} and min(floor(g) for g in gt) < 0  # offset rows can go negative


def test_verl_compute_score(exported):
    rows = exported["verl"]
    compute_score = _load_by_path(verl).compute_score
    for r in rows:
        call = dict(data_source=r["data_source"], ground_truth=r["reward_model"]["ground_truth"],
                    extra_info=r["extra_info"])
        good = compute_score(solution_str=r["reward_model"]["ground_truth"], **call)
        assert set(good) == set(KEYS) | {"score"} and good["format"] == 1.0
        bad = [compute_score(solution_str=g, **call)["score"] for g in GARBAGE]
        assert bad == [floor(r["extra_info"])] * len(GARBAGE)
        assert good["score"] >= compute_score(solution_str=_shifted(r["extra_info"]["solution"]), **call)["score"]
    with pytest.raises(ValueError, match="data_source 'openai/gsm8k'"):
        compute_score("openai/gsm8k", "42", "42", {})
    with pytest.raises(ValueError, match="export easyr1|verl"):
        compute_score("getok", "x", "not json", None)


def test_rows_need_no_filesystem(exported, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = next(x for x in exported["verl"] if x["extra_info"]["task"] == "seg" and x["extra_info"]["stage"] == "grid")
    assert "cand_npz" not in r["extra_info"] and r["extra_info"]["cand_npz_b64"]
    s = verl.compute_score(r["data_source"], r["extra_info"]["solution"], r["reward_model"]["ground_truth"], r["extra_info"])
    assert s["mask_iou"] > 0
