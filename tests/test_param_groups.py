"""`lrkit.param_groups`: blocks found in a tiny HF transformer and a CNN, layer decay, lr ranges, no decay, and Scheduler ratios."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import lrkit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")


def _bert() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, max_position_embeddings=16
    )
    return transformers.BertForSequenceClassification(config)


def _cnn() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10),
    )  # fmt: skip


BERT_BLOCKS = ["bert.embeddings", "bert.encoder.layer.0", "bert.encoder.layer.1", "bert.pooler", "classifier"]


def test_a_transformers_blocks_are_found_in_order_with_the_head_last() -> None:
    groups = lrkit.param_groups(_bert(), 1e-3, layer_decay=0.5)
    assert [g["name"] for g in groups] == BERT_BLOCKS
    np.testing.assert_allclose([g["lr"] for g in groups], [1e-3 * 0.5**k for k in (4, 3, 2, 1, 0)], rtol=1e-15)


def test_a_gpt2s_blocks_are_its_h_list_and_a_tied_head_is_taken_once() -> None:
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=50, n_positions=16))
    names = [g["name"] for g in lrkit.param_groups(model, 1e-3)]
    assert names == ["transformer.wte", "transformer.wpe", "transformer.h.0", "transformer.h.1", "transformer.ln_f"]


@pytest.mark.parametrize("make", [_bert, _cnn], ids=["bert", "cnn"])
def test_every_trainable_parameter_is_in_exactly_one_group_and_no_decay_hits_biases_and_norms(make: object) -> None:
    model = make()  # type: ignore[operator]
    groups = lrkit.param_groups(model, 1e-3, weight_decay=0.05)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(ids) == len(set(ids))
    decay = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    owners = {id(p): type(m).__name__ for m in model.modules() for p in m.parameters(recurse=False)}
    for name, p in model.named_parameters():
        expected = 0.0 if name.endswith("bias") or "Norm" in owners[id(p)] else 0.05
        assert decay[id(p)] == expected, name


def test_lr_range_spreads_log_evenly_from_the_first_block_to_the_head() -> None:
    groups = lrkit.param_groups(_cnn(), 1e-2, lr_range=(1e-4, 1e-2))
    assert [g["name"] for g in groups] == ["0", "1", "3", "6"]  # layers without parameters are no block
    np.testing.assert_allclose([g["lr"] for g in groups], np.geomspace(1e-4, 1e-2, 4), rtol=1e-12)


@pytest.mark.parametrize("make", [_bert, _cnn], ids=["bert", "cnn"])
def test_the_scheduler_keeps_the_groups_ratios_and_the_schedule_can_be_the_heads_lr(make: object) -> None:
    groups = lrkit.param_groups(make(), 1e-3, weight_decay=0.01, layer_decay=0.7)  # type: ignore[operator]
    ratios = np.asarray([g["lr"] for g in groups]) / 1e-3  # before torch takes the dicts over (the Scheduler writes into them)
    opt = torch.optim.AdamW(groups)
    s = lrkit.warmup(lrkit.cosine(start=1e-3, steps=200), steps=20)
    sched = lrkit.Scheduler(opt, lr=s, group_scales=[g["lr"] / 1e-3 for g in groups])
    for t in range(1, 300):
        opt.step()
        sched.step()
        if t % 37 == 0:
            np.testing.assert_allclose([g["lr"] for g in opt.param_groups], s(t) * ratios, rtol=1e-12)
    assert opt.param_groups[-1]["lr"] == s(299)  # the head follows the schedule itself


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"layer_decay": 0.5, "lr_range": (1e-4, 1e-3)}, lrkit.ScheduleError, "parameter 'lr_range' cannot be given together with"),
        ({"layer_decay": 1.5}, lrkit.ScheduleError, r"parameter 'layer_decay' must lie in \(0.0, 1.0\]"),
        ({"lr_range": (1e-4, 1e-2)}, lrkit.ScheduleError, "must end at the head's lr"),
        ({"lr_range": (1e-3,)}, lrkit.ScheduleError, "must have 2 items"),
        ({"weight_decay": -0.1}, lrkit.ScheduleError, "parameter 'weight_decay' must be >= 0"),
        ({"no_decay": "bias"}, TypeError, "parameter 'no_decay' must be a list"),
        ({"lr": 0.0}, lrkit.ScheduleError, "parameter 'lr' must be > 0"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict, error: type, match: str) -> None:
    kwargs = {"lr": 1e-3} | kwargs
    with pytest.raises(error, match=match):
        lrkit.param_groups(_cnn(), **kwargs)


def test_a_model_without_trainable_parameters_is_refused() -> None:
    with pytest.raises(lrkit.ScheduleError, match="parameter 'model' must have trainable parameters"):
        lrkit.param_groups(torch.nn.ReLU(), 1e-3)
