"""Train a teacher (or a plain student baseline) on CIFAR-100.

    python train_teacher.py --model resnet32x4
"""
from helper.options import Parser, add_training_arguments, check_model_name, finalize_training_arguments
from helper.trainer import run_guarded


def parse_args(argv=None):
    from models import imagenet_model_dict, model_dict
    p = Parser(description="Train a CIFAR-100 model with cross-entropy (a teacher or a baseline).")
    p.add_argument("--model", type=str, default=None,
                   help=f"CIFAR-100 (default resnet110): {', '.join(model_dict)}; ImageNet (default resnet18_imagenet): "
                        f"{', '.join(imagenet_model_dict)}")
    p.add_argument("-t", "--trial", type=int, default=0, help="experiment id (part of the run folder; default seed)")
    add_training_arguments(p, compile_help="torch.compile the model")
    opt = p.parse_args(argv)
    check_model_name(opt, "model", cifar_default="resnet110")
    return finalize_training_arguments(opt, opt.model)


def main(argv=None):
    from dataset import data_is_generated, make_loaders, num_classes
    from distiller_zoo.base import Distiller
    from helper.model_setup import prepare_model
    from helper.run_folder import teacher_folder, teacher_identity
    from helper.run_start import read_data, start_processes, warn_if_generated
    from helper.trainer import Trainer, check_run_folder
    from helper.util import seed_everything
    from models import build_model

    opt = parse_args(argv)
    procs, device, say = start_processes(opt)
    opt.generated_data = data_is_generated(opt)
    run_dir = teacher_folder(opt)
    identity = teacher_identity(opt)
    resume_path = check_run_folder(run_dir, opt, identity, log=say)
    seed_everything(opt.seed, opt.deterministic)
    data = read_data(opt, procs)
    opt.n_data = len(data["train"][1]) if not isinstance(data["train"], list) else len(data["train"])
    train_loader, test_loader = make_loaders(opt, data, device, rank=procs.rank, world_size=procs.world_size)
    opt.num_classes = num_classes(opt)
    model = prepare_model(build_model(opt.model, opt.num_classes), opt, device)
    distiller = Distiller(model, None, opt).to(device)
    run_info = {**vars(opt), "kind": "teacher", "model": opt.model, "epochs": opt.epochs, "device": str(device),
                "identity": identity, "world_size": procs.world_size}
    warn_if_generated(opt, say)
    where = f"{procs.world_size} processes, global batch {opt.batch_size}, " if procs.distributed else ""
    say(f"training {opt.model} on {opt.dataset} ({opt.n_data} images) on {where}{device}; run folder '{run_dir}'")
    trainer = Trainer(opt, distiller, train_loader, test_loader, run_dir, opt.model, identity, run_info, device,
                      log=say, procs=procs)
    trainer.fit(resume_path)


if __name__ == "__main__":
    run_guarded(main)
