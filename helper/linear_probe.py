"""The linear probe of the PACKD authors' eval_rep_base.py on a frozen student's pooled feature.

A fresh classifier, initialised as the student's model class initialises its own, trained with
cross-entropy and Nesterov SGD on the features of the frozen backbone (eval mode: BatchNorm keeps
its CIFAR-100 statistics). The backbone cannot change, so each epoch's augmented training images
pass through it once, in large batches, and the probe then takes the authors' shuffled steps on
those features: the same steps and inputs as their per-sample DataLoader, one backbone forward
per image and epoch instead of one per step.
"""
import math
import os
import time

import torch
import torch.nn.functional as F

from dataset.resized_crop import SIZE, Transfer32
from dataset.transfer_sets import DATASETS
from helper.probe_folder import PROBE_WEIGHTS
from helper.student_checkpoint import classifier_name
from helper.util import learning_rate_at, set_lr, topk_correct
from util.atomic import atomic_save
from util.errors import NonFiniteLoss


def fresh_classifier(name, num_classes):
    """The classifier a freshly built `name` model for `num_classes` has (its own initialisation,
    e.g. VGG's N(0, 0.01) and WRN's zero bias), drawn from the seeded global RNG: the authors build
    the model for the new classes and train only that layer."""
    from models import model_dict
    model = model_dict[name](num_classes=num_classes)
    return model.get_submodule(classifier_name(model))


@torch.no_grad()
def extract_features(backbone, images, transform, batch_size):
    """Pooled features (N, D) float32 of the frozen backbone for all `images` (uint8 on the device),
    `transform(chunk)` applied chunk by chunk. no_grad, not inference_mode: the probe's autograd
    saves these features for its backward."""
    out = []
    for start in range(0, len(images), batch_size):
        feats, _ = backbone(transform(images[start:start + batch_size]), is_feat=True)
        out.append(feats[-1].float())
    return torch.cat(out)


def lr_at(opt, epoch, step=0, steps=1):
    """The authors' rule (1-based epochs): warm-up per step for `--warmup_epoch` epochs, then
    base x rate^(number of milestones < epoch - warmup)."""
    if epoch <= opt.warmup_epoch:
        return opt.learning_rate * (1 + step + (epoch - 1) * steps) / (opt.warmup_epoch * steps)
    return learning_rate_at(epoch - opt.warmup_epoch, opt.learning_rate, opt.lr_decay_epochs, opt.lr_decay_rate)


def evaluate_probe(probe, feats, labels, batch_size=4096):
    """Test loss, top-1 and top-5 (percent) of the probe on precomputed features; one host read."""
    loss = torch.zeros((), device=feats.device, dtype=torch.float64)
    c1, c5 = torch.zeros_like(loss), torch.zeros_like(loss)
    with torch.no_grad():
        for start in range(0, len(labels), batch_size):
            logits = probe(feats[start:start + batch_size])
            y = labels[start:start + batch_size]
            loss += F.cross_entropy(logits, y, reduction="sum").double()
            a1, a5 = topk_correct(logits, y, (1, min(5, logits.shape[1])))
            c1 += a1
            c5 += a5
    n = len(labels)
    loss, c1, c5 = torch.stack([loss, c1, c5]).tolist()
    return {"test_loss": loss / n, "test_acc": 100.0 * c1 / n, "test_acc_top5": 100.0 * c5 / n}


def train_probe(opt, student, data, device, run_log, log=print):
    """The probe's epochs; returns the summary."""
    backbone = student.model.to(device)
    spec = DATASETS[opt.dataset]
    transform = Transfer32(spec["mean"], spec["std"], device)
    train_x, train_y = (t.to(device) for t in data["train"])
    test_x, test_y = (t.to(device) for t in data["test"])
    num_classes = len(data["classes"])
    generator = torch.Generator(device=device)
    generator.manual_seed(opt.seed)
    with torch.no_grad():
        feat_dim = backbone(torch.zeros(1, 3, SIZE, SIZE, device=device), is_feat=True)[0][-1].shape[1]
    probe = fresh_classifier(student.name, num_classes).to(device)
    if probe.in_features != feat_dim:
        raise RuntimeError(f"{student.name}: its classifier takes {probe.in_features} features, its pooled feature "
                           f"has {feat_dim}")
    kwargs = {"fused": True} if device.type == "cuda" else {}
    optimizer = torch.optim.SGD(probe.parameters(), lr=opt.learning_rate, momentum=opt.momentum,
                                weight_decay=opt.weight_decay, nesterov=True, **kwargs)
    test_feats = extract_features(backbone, test_x, transform.test, opt.feature_batch_size)
    n = len(train_y)
    steps = math.ceil(n / opt.batch_size)  # the last partial batch is kept, as a DataLoader's
    best_acc, best_epoch, last = -1.0, 0, None
    for epoch in range(1, opt.epochs + 1):
        t0 = time.time()
        feats = extract_features(backbone, train_x, lambda x: transform.train(x, generator), opt.feature_batch_size)
        order = torch.randperm(n, generator=generator, device=device)
        probe.train()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.float64)
        lr = lr_at(opt, epoch)
        set_lr(optimizer, lr)
        for step in range(steps):
            if epoch <= opt.warmup_epoch:
                lr = lr_at(opt, epoch, step, steps)
                set_lr(optimizer, lr)
            index = order[step * opt.batch_size:(step + 1) * opt.batch_size]
            y = train_y.index_select(0, index)
            logits = probe(feats.index_select(0, index))
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double() * len(index)
            correct += (logits.detach().argmax(1) == y).sum()
        train_loss, train_acc = (torch.stack([loss_sum, correct]) / n).tolist()
        if not math.isfinite(train_loss):
            raise NonFiniteLoss(epoch, steps, {"cls": train_loss}, hint="try a lower --learning_rate")
        test = evaluate_probe(probe, test_feats, test_y)
        row = {"epoch": epoch, "lr": lr, "train_loss": train_loss, "train_acc": 100.0 * train_acc, **test,
               "seconds": round(time.time() - t0, 3)}
        run_log.record(row)
        last = test["test_acc"]
        if last > best_acc:
            best_acc, best_epoch = last, epoch
        log(f"epoch {epoch}/{opt.epochs} lr {lr:.4g} | train loss {train_loss:.4f} acc {100 * train_acc:.2f} | "
            f"test loss {test['test_loss']:.4f} acc {last:.2f} top5 {test['test_acc_top5']:.2f} | "
            f"{row['seconds']:.1f}s")
    atomic_save({"model": probe.state_dict(), "epoch": opt.epochs, "accuracy": last, "best_acc": best_acc,
                 "feat_dim": feat_dim, "num_classes": num_classes, "model_s": student.name},
                os.path.join(run_log.run_dir, PROBE_WEIGHTS))
    return {"last_acc": last, "best_acc": best_acc, "best_epoch": best_epoch, "epochs": opt.epochs,
            "last_acc_top5": test["test_acc_top5"], "dataset": opt.dataset, "model_s": student.name,
            "student_run": student.run_name, "student_checkpoint": student.path,
            "student_weights": student.fingerprint, "feat_dim": feat_dim, "num_classes": num_classes}

