"""One packing rule: small batches per sample, estimates before running, advice, progress."""

from __future__ import annotations

import logging
import re
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import pets
from pets.compiler.estimate import Estimate, PackingWarning


@pytest.fixture(scope="module")
def model() -> pets.PrivateModel:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 8), pets.nn.Square(), nn.Linear(8, 3)).eval()
    return pets.compile(net, backend=pets.backend("ckks"), example_input=torch.randn(64, 16))


def test_backend_encrypt_packs_a_few_samples_per_sample() -> None:
    be = pets.backend("ckks", depth=1)
    assert be.encrypt(np.ones((3, 4))).layout == "per_sample"
    assert be.encrypt(np.ones((17, 4))).layout == "batched"
    assert pets.backend("ckks", depth=1, layout="batched").encrypt(np.ones((3, 4))).layout == (
        "batched")


def test_estimates_grow_with_samples_per_sample_not_batched(model: pets.PrivateModel) -> None:
    one, many = model.estimate(1), model.estimate(200)
    assert set(one) == {"batched", "per_sample"}
    assert isinstance(one["batched"], Estimate)
    assert many["batched"].seconds == pytest.approx(one["batched"].seconds)
    assert many["per_sample"].seconds == pytest.approx(200 * one["per_sample"].seconds, rel=0.2)
    assert one["per_sample"].seconds < one["batched"].seconds
    assert "per_sample packing of 200 samples: about" in str(many["per_sample"])


def test_model_encrypt_picks_the_packing_that_finishes_first(model: pets.PrivateModel) -> None:
    estimates = model.estimate(300)
    fastest = min(estimates.values(), key=lambda e: e.seconds).layout
    assert model.encrypt(np.zeros((300, 16))).layout == fastest
    assert model.encrypt(np.zeros((2, 16))).layout == "per_sample"


def test_a_packing_that_fits_nowhere_is_refused_with_the_estimates(
    model: pets.PrivateModel, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys.modules["pets.compiler.estimate"], "available_memory", lambda: 1e3)
    with pytest.raises(pets.ParameterError, match=re.escape("no packing of 300 samples fits in")):
        model.encrypt(np.zeros((300, 16)))


def test_a_slow_packing_warns_once_saying_what_to_call(model: pets.PrivateModel) -> None:
    model.__dict__.pop("_advised", None)
    batched = model.backend.encrypt(np.zeros((3, 16)), layout="batched")
    with pytest.warns(PackingWarning, match="model.encrypt"):
        model(batched)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(batched)  # once


def test_an_unstaged_per_sample_input_is_advised(model: pets.PrivateModel) -> None:
    model.__dict__.pop("_advised", None)
    plain = model.backend.encrypt(np.zeros((1, 16)), layout="per_sample")
    with pytest.warns(PackingWarning, match="not laid out for the model's first product"):
        model(plain)


def test_long_runs_log_their_progress(model: pets.PrivateModel,
                                      caplog: pytest.LogCaptureFixture) -> None:
    x = model.encrypt(np.zeros((2, 16)))
    model.__dict__["_estimates"][(2, "per_sample")] = Estimate("per_sample", 2, 60.0, 1.0)
    with caplog.at_level(logging.INFO, logger="pets.compiler.model"):
        model(x)
    messages = [r.getMessage() for r in caplog.records]
    assert any("running 3 layers on 2 samples (per_sample packing): about 60 s" in m
               for m in messages)
    assert any(m.startswith("layer 3/3 (") and "done after" in m for m in messages)
    del model.__dict__["_estimates"][(2, "per_sample")]


def test_estimates_default_to_the_most_samples_encrypted_at_once(
    model: pets.PrivateModel,
) -> None:
    assert model.requirements.max_rows == 64  # the example's batch
    assert model.estimate()["per_sample"].rows == 64
