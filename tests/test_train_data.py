"""Streaming dataset: shard resolution, exact once-per-epoch coverage across workers, examples."""
import numpy as np
import pytest
import torch

from getok_data.config import load_config
from getok_data.tokens import parse
from getok_data.train.data import (
    ShardStream, collate, expand_sample, make_loader, offset_answer, resolve_shards, target_info,
)
from getok_data.train.vocab import SeqVocab
from pipelines.build import run_build


def tiny_build(out, size=8, per_shard=2, split="train"):
    run_build(load_config(None, {"source": {"name": "synthetic", "split": split, "size": size}, "grid": {"n": 8},
                                 "build": {"out": str(out), "images_per_shard": per_shard}}), progress=False)
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return tiny_build(tmp_path_factory.mktemp("train_data"))


def keys_seen(shards, workers, **kw):
    stream = ShardStream(shards, {"image_size": 32}, shuffle=kw.pop("shuffle", True), expand=False, **kw)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers,
                                         collate_fn=lambda s: s["meta"]["key"])
    return list(loader)


def test_resolve_shards_folder_manifest_brace(build):
    by_folder = resolve_shards(str(build))
    assert [u.rsplit("/", 1)[1] for u in by_folder] == [f"shard-{k:06d}.tar" for k in range(4)]
    assert resolve_shards(str(build / "manifest.json")) == by_folder
    assert resolve_shards(f"{build}/shard-{{000000..000003}}.tar") == by_folder
    assert resolve_shards("file://" + str(build))[0].startswith("file://")
    with pytest.raises(FileNotFoundError):
        resolve_shards(str(build / "nothing-here"))


@pytest.mark.parametrize("shards", ["all", "one"])
def test_every_sample_exactly_once_per_epoch_across_two_workers(build, shards):
    spec = str(build) if shards == "all" else str(build / "shard-000001.tar")  # 1 shard < 2 workers
    single = keys_seen(spec, 0, shuffle=False)
    assert len(single) == (8 if shards == "all" else 2)
    for epoch in range(2):
        seen = keys_seen(spec, 2, seed=epoch)
        assert sorted(seen) == sorted(single) and len(set(seen)) == len(seen)


def test_resampling_is_endless(build):
    stream = ShardStream(str(build), {"image_size": 32}, resample=True, expand=False)
    it = iter(stream)
    assert len([next(it) for _ in range(20)]) == 20


def test_examples_expand_targets_and_sentences(build):
    stream = ShardStream(str(build), {"image_size": 32}, stage="eval", shuffle=False, with_table=True)
    samples = list(ShardStream(str(build), {"image_size": 32}, shuffle=False, expand=False))
    pairs = sum(len(t["sentences"]) for s in samples for t in s["meta"]["targets"])
    examples = list(stream)
    assert len(examples) == 3 * pairs and {e.task for e in examples} == {"seg", "box", "point"}
    e = examples[0]
    assert e.image.shape == (32, 32, 3) and e.image.dtype == np.uint8 and e.table is not None
    assert e.prompt.startswith("<image>") and e.sentence in e.prompt


def test_offset_answers_match_the_stored_refine_samples(build):
    rng = np.random.default_rng(0)
    for s in ShardStream(str(build), {"image_size": 32}, shuffle=False, expand=False):
        meta = s["meta"]
        for t in meta["targets"]:
            info = target_info(meta, t)
            for r in t["refine"]:
                assert offset_answer(parse(r["prompt"], 8), info) == r["answer"]
        for ex in expand_sample(meta, s["image"], {"offset_rate": 1.0}, "offset", rng):
            assert ex.task == "offset" and len(parse(ex.previous, 8)) == 1
            steps = parse(ex.answer, 8)[0].groups[0].steps
            assert len(steps) == len(parse(ex.previous, 8)[0].anchors)


def test_far_jitter_adds_anchors_away_from_the_target_that_answer_delete(build):
    """``jitter_far`` puts anchors anywhere on the grid: the far ones must be answered <DELETE>."""
    from getok_data.train.data import offset_prompt

    rng = np.random.default_rng(0)
    deleted_far = 0
    for s in ShardStream(str(build), {"image_size": 32}, shuffle=False, expand=False):
        meta = s["meta"]
        for t in (t for t in meta["targets"] if t["tokens"]["seg"] is not None):
            info = target_info(meta, t)
            for _ in range(20):
                prev = parse(offset_prompt(t, info, {"jitter_far": 3.0, "jitter_extra": 0.0}, rng), 8)
                steps = parse(offset_answer(prev, info), 8)[0].groups[0].steps
                for (i, j), step in zip(prev[0].anchors, steps):
                    far = t["regions"][j * 8 + i] == "F"
                    assert (step is None) or not far  # a far anchor is always answered <DELETE>
                    deleted_far += far
    assert deleted_far > 50
    # with every jitter off, only the stored refinement prompts and the GT answer remain
    t = next(t for t in meta["targets"] if t["tokens"]["seg"] is not None)
    off = {"jitter_extra": 0.0, "jitter_move": 0.0, "jitter_far": 0.0}
    plain = {offset_prompt(t, target_info(meta, t), off, rng) for _ in range(50)}
    assert len(plain) <= len(t["refine"]) + 1


def test_collate_and_loader(build):
    v = SeqVocab(8)
    loader, stream = make_loader(str(build), {"image_size": 32, "shuffle_buffer": 0}, v, "both", 16, workers=2)
    batch = next(iter(loader))
    ids, mask = batch["ids"], batch["loss_mask"]
    assert ids.shape[0] == 16 and batch["images"].shape[1:] == (3, 32, 32)
    assert batch["images"].shape[0] == len({e.key for e in batch["examples"]}) <= 16
    for b, e in enumerate(batch["examples"]):
        row = ids[b].tolist()
        predicted = [row[t + 1] for t in range(len(row) - 1) if mask[b, t]]
        assert predicted == v.ids(e.answer) + [v.eos]
        assert batch["img_index"][b] == list(dict.fromkeys(x.key for x in batch["examples"])).index(e.key)
    assert collate(batch["examples"][:2], v)["ids"].shape[0] == 2
