"""PACKD's forward-only first epoch, as the shared loop runs it."""
import argparse

import pytest
import torch

from dataset import load_cifar100, make_loaders
from distiller_zoo import METHODS
from distiller_zoo.PACKD import add_packd_arguments
from helper.loops import train_epoch
from helper.trainer import make_optimizer
from models import model_dict


def packd_opt(**kw):
    p = argparse.ArgumentParser()
    add_packd_arguments(p)
    opt = p.parse_args([])
    base = dict(model_s="resnet8", model_t="resnet8", distill="packd", gamma=None, alpha=None, beta=None, kd_T=4,
                feat_dim=128, mode="exact", nce_k=16, nce_t=0.07, nce_m=0.5, batch_size=100, learning_rate=0.05,
                momentum=0.9, weight_decay=5e-4, num_classes=100, seed=0, loader="device", dataset="cifar100",
                num_workers=0, mixup_num=1, t_epoch=1)
    base.update(kw)
    for k, v in base.items():
        setattr(opt, k, v)
    return opt


@pytest.mark.slow
def test_first_epoch_is_forward_only_and_fills_the_memory(tiny_cifar):
    torch.manual_seed(0)
    opt = packd_opt()
    data = load_cifar100(str(tiny_cifar), download_if_missing=False)
    device = torch.device("cpu")
    method = METHODS["packd"]
    train, _ = make_loaders(opt, data, device, method.needs)
    opt.n_data, opt.steps_per_epoch = train.num_samples, len(train)
    distiller = method(model_dict["resnet8"](num_classes=100), model_dict["resnet8"](num_classes=100), opt)
    assert distiller.forward_only_first_epoch
    optimizer = make_optimizer(distiller.trainable_parameters(), opt, device)
    params = {k: v.clone() for k, v in distiller.student.named_parameters()}
    bn_mean = distiller.student.bn1.running_mean.clone()
    memory = distiller.state_dict()
    memory = {k: v.clone() for k, v in memory.items() if k.endswith("memory_bank")}
    assert len(memory) == 1
    (mkey, before), = memory.items()

    train_epoch(distiller, train, optimizer, 1, device, forward_only=True)
    for k, v in distiller.student.named_parameters():
        assert torch.equal(v, params[k]), f"{k} changed in the forward-only epoch"
    assert not torch.equal(distiller.student.bn1.running_mean, bn_mean), "BatchNorm statistics not updated"
    after = distiller.state_dict()[mkey]
    changed = (after != before).any(dim=1)
    assert changed.all(), "every memory row is written in the first pass (momentum 0)"
    assert torch.allclose(after.norm(dim=1), torch.ones(len(after)), atol=1e-5)
    # the second epoch trains: weights move, and the memory now uses momentum nce_m
    train_epoch(distiller, train, optimizer, 2, device)
    assert float(distiller.memory_momentum()) == opt.nce_m
    assert any(not torch.equal(v, params[k]) for k, v in distiller.student.named_parameters())


def test_skip_warmup_variant_trains_from_the_first_epoch():
    opt = packd_opt(packd_skip_warmup=True, n_data=200, steps_per_epoch=2)
    distiller = METHODS["packd"](model_dict["resnet8"](num_classes=100), model_dict["resnet8"](num_classes=100), opt)
    assert not distiller.forward_only_first_epoch
