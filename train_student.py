"""Distil a CIFAR-100 student from a trained teacher with one of the zoo's methods.

    python train_student.py --path_t ./save/models/resnet32x4_vanilla/ckpt_epoch_240.pth \
        --distill crd --model_s resnet8x4 -a 0 -b 0.8 --trial 1
"""
import os

from helper.errors import UsageError
from helper.options import Parser, add_training_arguments, finalize_training_arguments
from helper.trainer import Trainer, check_run_folder, run_guarded

ALIASES = {"PACKDCONLoss": "packd"}


def parse_args(argv=None):
    from distiller_zoo import METHODS, add_method_arguments
    p = Parser(description="Distil a CIFAR-100 student (RepDistiller flags; PACKD's added).")
    g = p.add_argument_group("distillation (RepDistiller flags)")
    g.add_argument("--path_t", type=str, required=True, help="teacher checkpoint")
    g.add_argument("--model_t", type=str, default=None, help="teacher model, when neither checkpoint nor folder names it")
    g.add_argument("--model_s", type=str, default="resnet8")
    g.add_argument("--distill", type=str, default="kd", help=f"one of {', '.join(METHODS)} (or PACKDCONLoss)")
    g.add_argument("--trial", type=str, default="1", help="trial id (part of the run folder)")
    g.add_argument("-r", "--gamma", type=float, default=None, help="weight of cross-entropy (default: the method's)")
    g.add_argument("-a", "--alpha", type=float, default=None, help="weight of KD (default: the method's)")
    g.add_argument("-b", "--beta", type=float, default=None, help="weight of the method's loss (default: the method's)")
    g.add_argument("--kd_T", type=float, default=4, help="KD temperature")
    g.add_argument("--feat_dim", type=int, default=128, help="embedding dim (CRD, CC, PACKD)")
    g.add_argument("--mode", type=str, default="exact", choices=["exact", "relax"], help="CRD positive")
    g.add_argument("--nce_k", type=int, default=16384, help="negatives per sample (CRD, PACKD)")
    g.add_argument("--nce_t", type=float, default=0.07, help="CRD temperature")
    g.add_argument("--nce_m", type=float, default=0.5, help="memory momentum (CRD, PACKD)")
    g.add_argument("--hint_layer", type=int, default=2, choices=[0, 1, 2, 3, 4])
    g.add_argument("--init_epochs", type=int, default=30, help="pre-training epochs (abound, factor, fsp)")
    g.add_argument("--teacher_bf16", action="store_true",
                   help="run the frozen teacher in bf16 autocast, outputs cast back to float32 "
                        "(faster; changes numerics; the student stays float32 unless --amp)")
    add_method_arguments(p)
    add_training_arguments(p)
    opt = p.parse_args(argv)
    opt.distill = ALIASES.get(opt.distill, opt.distill)
    if opt.distill not in METHODS:
        raise UsageError(f"unknown --distill '{opt.distill}'; valid methods: {', '.join(METHODS)}")
    from models import model_dict
    if opt.model_s not in model_dict:
        raise UsageError(f"unknown --model_s '{opt.model_s}'; valid names: {', '.join(model_dict)}")
    if opt.nce_k <= 0:
        raise UsageError(f"--nce_k must be positive, got {opt.nce_k}")
    if getattr(opt, "mixup_num", 0) < -1:
        raise UsageError(f"--mixup_num must be -1 or more, got {opt.mixup_num}")
    if opt.init_epochs < 0:
        raise UsageError(f"--init_epochs must be 0 or more, got {opt.init_epochs}")
    return finalize_training_arguments(opt, opt.model_s)


def run_folder(opt):
    name = (f"S:{opt.model_s}_T:{opt.model_t}_{opt.dataset}_{opt.distill}"
            f"_r:{opt.gamma}_a:{opt.alpha}_b:{opt.beta}_{opt.trial}")
    return os.path.join(opt.save_dir, "student_model", name)


def main(argv=None):
    from dataset import load_data, make_loaders
    from distiller_zoo import METHODS, flags_without_effect
    from distiller_zoo._base import resolve_weights
    from helper.loops import evaluate
    from helper.teacher import load_teacher, weights_fingerprint
    from helper.util import resolve_device, seed_everything
    from models import model_dict
    from train_teacher import prepare_model

    opt = parse_args(argv)
    for flag, reason in flags_without_effect(opt).items():
        print(f"note: {flag} is accepted for the PACKD authors' commands but has no effect: {reason}")
    method = METHODS[opt.distill]
    device = resolve_device(opt.device)
    teacher, opt.model_t = load_teacher(opt.path_t, opt.model_t, trust=opt.trust_checkpoint)
    weights = resolve_weights(method, opt)
    opt.gamma, opt.alpha, opt.beta = weights["gamma"], weights["alpha"], weights["beta"]
    run_dir = run_folder(opt)
    identity = {"kind": "student", "model_s": opt.model_s, "model_t": opt.model_t, "distill": opt.distill,
                "teacher_weights": weights_fingerprint(teacher)}
    resume_path = check_run_folder(run_dir, opt, identity)
    seed_everything(opt.seed, opt.deterministic)
    data = load_data(opt)
    train_loader, test_loader = make_loaders(opt, data, device, method.needs)
    opt.n_data = train_loader.num_samples
    opt.steps_per_epoch = len(train_loader)
    teacher = prepare_model(teacher, opt, device)  # device, channels_last, compile: as the student
    teacher_acc = evaluate(teacher, test_loader, device, amp=opt.amp or opt.teacher_bf16)["test_acc"]
    print(f"teacher {opt.model_t} ('{opt.path_t}'): test top-1 {teacher_acc:.2f}")
    student = prepare_model(model_dict[opt.model_s](num_classes=100), opt, device)
    distiller = method(student, teacher, opt).to(device)
    print(f"distilling {opt.model_t} -> {opt.model_s} with {opt.distill}: loss = {opt.gamma:g}*CE + "
          f"{opt.alpha:g}*KD(T={opt.kd_T:g}) + {opt.beta:g}*{opt.distill}"
          + ("".join(f" + {v:g}*{k}" for k, v in distiller.extra_weights().items())))
    print(f"{opt.n_data} training images, {len(train_loader)} steps per epoch, device {device}; run folder '{run_dir}'")
    run_info = {**vars(opt), "kind": "student", "teacher_acc": teacher_acc, "device": str(device),
                "epochs": opt.epochs + (1 if distiller.forward_only_first_epoch else 0)}
    trainer = Trainer(opt, distiller, train_loader, test_loader, run_dir, opt.model_s, identity, run_info, device)
    trainer.fit(resume_path)


if __name__ == "__main__":
    run_guarded(main)
