"""One trainer, three dimensions: Conv1d on signals and Conv3d on clips learn identities they never saw."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from visage.cli import main
from visage.errors import VisageError
from visage.train import ConvEncoder, TrainConfig, TripletTrainer, load_trained
from visage.train.synthetic import make_clips, make_signals, write_people

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("dim, shape", [(1, (1, 64)), (2, (3, 24, 24)), (3, (1, 6, 12, 12))])
def test_conv_encoder_works_in_each_dimension(dim, shape):
    net = ConvEncoder(dim, in_channels=shape[0], embedding_dim=16, width=4)
    assert net(torch.zeros(2, *shape)).shape == (2, 16)
    conv = next(m for m in net.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))
    assert conv.weight.dim() == dim + 2


def test_conv_encoder_refuses_other_dimensions():
    with pytest.raises(VisageError, match="1, 2 or 3"):
        ConvEncoder(4)


def _train(net, train, val, epochs):
    torch.manual_seed(0)
    config = TrainConfig(epochs=epochs, patience=epochs, lr=3e-3, batches_per_epoch=8, people_per_batch=8,
                         per_person=4)
    return TripletTrainer(net, *train, *val, config).fit(progress=False)


def test_conv1d_learns_waveform_identities_held_out():
    result = _train(ConvEncoder(1, 1, 32, width=16, kernel_size=5), make_signals(20, 8, seed=0),
                    make_signals(10, 8, seed=1), epochs=5)
    start, best = result.history[0].validation, result.best_validation
    assert result.history[-1].loss < result.history[1].loss
    assert best["accuracy"] > 0.8 and best["accuracy"] > start["accuracy"] + 0.15  # chance is 0.5
    assert best["auc"] > 0.88


@pytest.mark.slow
def test_conv3d_learns_motion_identities_held_out():
    result = _train(ConvEncoder(3, 1, 32, width=8), make_clips(20, 8, seed=0), make_clips(10, 8, seed=1), epochs=5)
    start, best = result.history[0].validation, result.best_validation
    assert result.history[-1].loss < result.history[1].loss
    assert best["accuracy"] > 0.75 and best["accuracy"] > start["accuracy"] + 0.1
    assert best["auc"] > 0.85


def test_train_cli_on_npy_signals_trains_a_conv1d(tmp_path, capsys):
    x, labels = make_signals(12, 6, length=64, seed=0)
    data = write_people(tmp_path / "signals", x, labels)
    model = tmp_path / "sig.pt"
    assert main(["train", str(data), "--epochs", "2", "--batches", "3", "--holdout", "4", "-o", str(model),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["history"]) == 3
    trained = load_trained(model)
    assert trained.kind == "conv" and trained.meta["net_spec"]["dim"] == 1
    e = trained.embed(x[:3])
    assert e.shape == (3, 64) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert main(["train", str(data), "--mode", "head", "-o", str(model)]) == 2
    assert "only --mode conv" in capsys.readouterr().err


def test_arrays_of_different_shapes_are_refused_by_name(tmp_path, capsys):
    for person, shape in (("a", (1, 32)), ("b", (1, 40))):
        (tmp_path / person).mkdir()
        for k in range(2):
            np.save(tmp_path / person / f"{k}.npy", np.zeros(shape, np.float32))
    assert main(["train", str(tmp_path), "-o", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "differs" in err and ".npy" in err
