"""Train a teacher (or a plain student baseline) on CIFAR-100.

    python train_teacher.py --model resnet32x4
"""
import os

import torch

from helper.errors import UsageError
from helper.options import Parser, add_training_arguments, finalize_training_arguments
from helper.trainer import Trainer, check_run_folder, run_guarded


def parse_args(argv=None):
    p = Parser(description="Train a CIFAR-100 model with cross-entropy (a teacher or a baseline).")
    p.add_argument("--model", type=str, default="resnet110", help="one of models.model_dict")
    p.add_argument("-t", "--trial", type=int, default=0, help="experiment id (part of the run folder)")
    add_training_arguments(p)
    opt = p.parse_args(argv)
    from models import model_dict
    if opt.model not in model_dict:
        raise UsageError(f"unknown --model '{opt.model}'; valid names: {', '.join(model_dict)}")
    return finalize_training_arguments(opt, opt.model)


def run_folder(opt):
    name = f"{opt.model}_{opt.dataset}_lr_{opt.learning_rate}_decay_{opt.weight_decay}_trial_{opt.trial}"
    return os.path.join(opt.save_dir, "models", name)


def prepare_model(model, opt, device):
    """The model on `device`, channels_last and compiled as the options say (student and teacher)."""
    model = model.to(device)
    if opt.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if opt.compile:
        # Static shapes: the last partial batch and the test batches get graphs of their own
        # instead of turning the main one dynamic, and CUDA graphs (reduce-overhead) need that.
        model.compile(mode=opt.compile_mode, dynamic=False)
    return model


def main(argv=None):
    from dataset import load_data, make_loaders
    from distiller_zoo._base import Distiller
    from helper.util import resolve_device, seed_everything
    from models import model_dict

    opt = parse_args(argv)
    device = resolve_device(opt.device)
    run_dir = run_folder(opt)
    identity = {"kind": "teacher", "model": opt.model, "dataset": opt.dataset}
    resume_path = check_run_folder(run_dir, opt, identity)
    seed_everything(opt.seed, opt.deterministic)
    data = load_data(opt)
    opt.n_data = len(data["train"][1])
    train_loader, test_loader = make_loaders(opt, data, device)
    model = prepare_model(model_dict[opt.model](num_classes=100), opt, device)
    distiller = Distiller(model, None, opt).to(device)
    run_info = {**vars(opt), "kind": "teacher", "model": opt.model, "epochs": opt.epochs, "device": str(device)}
    print(f"training {opt.model} on {opt.dataset} ({opt.n_data} images) on {device}; run folder '{run_dir}'")
    trainer = Trainer(opt, distiller, train_loader, test_loader, run_dir, opt.model, identity, run_info, device)
    trainer.fit(resume_path)


if __name__ == "__main__":
    run_guarded(main)
