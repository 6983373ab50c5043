import pathlib
import sys

import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory):
    """A learnable 100-class data set in the CIFAR-100 on-disk format (10 train, 2 test per class)."""
    from dataset.cifar import make_synthetic_cifar100
    folder = tmp_path_factory.mktemp("data")
    make_synthetic_cifar100(str(folder), train_per_class=10, test_per_class=2, seed=0)
    return folder


@pytest.fixture
def eager_compile(monkeypatch):
    """`nn.Module.compile` with dynamo's "eager" backend: the real tracing and guards, without
    inductor's code generation (minutes on a 2-core CPU). Returns the list of compile kwargs."""
    calls = []
    original = torch.nn.Module.compile

    def traced_eagerly(self, *args, **kwargs):
        calls.append(dict(kwargs))
        kwargs.pop("mode", None)  # modes are inductor options
        return original(self, *args, **{**kwargs, "backend": "eager"})

    monkeypatch.setattr(torch.nn.Module, "compile", traced_eagerly)
    torch._dynamo.reset()
    yield calls
    torch._dynamo.reset()
