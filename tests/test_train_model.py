"""The small model and constrained decoding: shapes, grammar, offset alignment, log-prob replay."""
import pytest
import torch

from getok_data.tokens import parse
from getok_data.train.decoding import allowed, generate, parses
from getok_data.train.grpo import answer_mask, token_logprobs
from getok_data.train.model import GroundingModel, ModelConfig, count_params, select_enc, sft_loss
from getok_data.train.vocab import SeqVocab

TINY = dict(n=4, image_size=32, d=32, heads=2, channels=(8, 16), text_buckets=64, max_words=8, max_len=40, max_anchors=5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return GroundingModel(ModelConfig(**TINY)).eval()


def inputs(b=6):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8, generator=g)
    text = torch.randint(1, 64, (b, 5), generator=g)
    return images, text, torch.arange(b) % 2


def test_vocab_ids_follow_format_md():
    v = SeqVocab(4)
    assert v.tokens[:16] == [f"<grid_{i}_{j}>" for j in range(4) for i in range(4)]
    assert v.tokens[16 + 4] == "<OFF_0_0>" and v.tokens[16 + 9] == "<DELETE>"
    seq, start = v.encode_example("offset", "<seg><grid_1_0></seg>", "<offset><seg><DELETE></seg></offset>")
    assert v.text(seq[start:-1]) == "<offset><seg><DELETE></seg></offset>" and seq[-1] == v.eos


def test_forward_shapes_and_grid_embedding_size():
    small = GroundingModel(ModelConfig(**TINY))
    full = GroundingModel(ModelConfig(**{**TINY, "grid_embed": "full"}))
    assert count_params(full) > count_params(small)
    images, text, idx = inputs()
    ids = torch.tensor([small.vocab.encode_example("seg", "", "<seg><grid_0_0></seg>")[0]] * 6)
    logits = small(images, text, ids, idx)
    assert logits.shape == (6, ids.shape[1], len(small.vocab))
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, 2:-1] = True
    assert sft_loss(logits, ids, mask).ndim == 0


def test_refs_align_each_offset_with_its_anchor(model):
    v = model.vocab
    seq, _ = v.encode_example("offset", "<seg><grid_1_0><grid_2_3></seg>", "<offset><seg><OFF_0_0><DELETE></seg></offset>")
    ref = model.refs(torch.tensor([seq]))[0].tolist()
    sep = seq.index(v.sep)
    # before <sep>: none; from <sep> until the first offset: anchor 0 (id 1); then anchor 1 (id 14)
    assert ref[:sep] == [-1] * sep
    first_off = sep + 3  # <sep> <offset> <seg> then the first offset token
    assert ref[sep:first_off] == [1] * 3 and ref[first_off] == 3 * 4 + 2
    assert ref[first_off + 2:] == [-1] * (len(seq) - first_off - 2)  # both anchors refined


@pytest.mark.parametrize("mode", ["strict", "grammar"])
def test_constrained_generation_always_parses(model, mode):
    images, text, idx = inputs()
    enc = model.encode(images, text, idx)
    tasks = ["seg", "box", "point", "seg", "box", "point"]
    gen = generate(model, enc, tasks, [""] * 6, mode=mode, sample=True, generator=torch.Generator().manual_seed(0))
    for task, t in zip(tasks, gen.texts(model.vocab)):
        if mode == "strict" or task != "box":
            assert parses(t, 4, task), t
        else:  # grammar mode may put box corners out of order (the format reward judges it)
            assert t.startswith("<box>") and t.endswith("</box>") and len(parse(t.replace("box>", "pl>"), 4)[0].anchors) == 2
    prev = ["<seg><grid_0_0><grid_3_3></seg>", "<box><grid_0_0><grid_2_2></box>", "<point><grid_1_1></point>"] * 2
    gen = generate(model, enc, ["offset"] * 6, prev, mode=mode, sample=True)
    assert all(parses(t, 4, "offset", p) for t, p in zip(gen.texts(model.vocab), prev))


def test_strict_grammar_rules():
    v = SeqVocab(4)
    seg = allowed(v, "seg", [], [v.open["seg"], 5], "strict", 5)
    assert not seg[:6].any() and seg[6:16].all() and seg[v.close["seg"]]
    box = allowed(v, "box", [], [v.open["box"], 1 * 4 + 2], "strict", 5)  # TL = (2, 1)
    assert box[1 * 4 + 2] and box[3 * 4 + 3] and not box[1 * 4 + 1] and not box[0 * 4 + 3]
    off = allowed(v, "offset", [("box", 2)], [v.open["offset"], v.open["box"]], "strict", 5)
    assert off[v.off0 : v.off0 + 9].all() and not off[v.off0 + 9]  # no <DELETE> on a box corner
    assert allowed(v, "seg", [], [v.open["seg"], 1, 2, 3, 4, 5], "strict", 5).nonzero().tolist() == [[v.close["seg"]]]


def test_teacher_forced_logprobs_replay_the_sampling_distribution(model):
    images, text, idx = inputs()
    enc = model.encode(images, text, idx)
    rows = torch.tensor([0, 0, 1, 1, 2, 2])
    gen = generate(model, select_enc(enc, rows), ["seg", "seg", "box", "box", "point", "point"], [""] * 6,
                   mode="grammar", sample=True, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        lp = token_logprobs(model, select_enc(enc, rows), gen)
    m = answer_mask(gen)
    assert m.any()
    assert torch.allclose(lp[m], gen.logp[m], atol=1e-5)
    assert (lp[~m] == 0).all()
