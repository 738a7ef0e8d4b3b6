"""poisonrepro.trained: a trained network stored as a cache artifact comes back with the same
weights and outputs, frozen unless asked; a missing one is a clear error, not a fresh network."""
import pytest
import torch

from poisonrepro import trained as TR
from poisonrepro.cache import ArtifactCache
from poisonrepro.surrogates import build


def test_a_stored_network_loads_with_its_weights_and_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONREPRO_ARTIFACTS", str(tmp_path))
    net = build("convnet_bn", 3).eval()
    x = torch.rand(4, 3, 32, 32)
    expected = net(x)
    art = TR.state_artifact(net, test_accuracy=0.5)
    assert float(art["test_accuracy"]) == 0.5
    ArtifactCache().tensors("protector", "k1", lambda: art)
    back = TR.load("convnet_bn", "protector", "k1", what="the protector's network")
    assert not back.training and not any(p.requires_grad for p in back.parameters())
    assert torch.allclose(back(x), expected)
    assert all(p.requires_grad for p in TR.load("convnet_bn", "protector", "k1", what="x", trainable=True).parameters())


def test_a_missing_network_is_an_error_that_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("POISONREPRO_ARTIFACTS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="the protector's network is not in the artifact cache"):
        TR.load("convnet_bn", "protector", "absent", what="the protector's network")
