"""Distil a CIFAR-100 student from a trained teacher with one of the zoo's methods.

    python train_student.py --path_t ./save/models/resnet32x4_vanilla/ckpt_epoch_240.pth \
        --distill crd --model_s resnet8x4 -a 0 -b 0.8 --trial 1
"""
from helper.options import Parser, add_training_arguments, check_model_name, finalize_training_arguments
from helper.trainer import run_guarded
from util.errors import UsageError


def parse_args(argv=None):
    from distiller_zoo import ALIASES, METHODS, add_method_arguments, method_named
    from models import imagenet_model_dict, model_dict
    p = Parser(description="Distil a CIFAR-100 student (RepDistiller flags; each method adds its own).")
    g = p.add_argument_group("distillation (RepDistiller flags)")
    g.add_argument("--path_t", type=str, required=True,
                   help="teacher checkpoint, or a run folder of train_teacher.py (its finished weights)")
    g.add_argument("--model_t", type=str, default=None, help="teacher model, when neither checkpoint nor folder names it")
    g.add_argument("--model_s", type=str, default=None,
                   help=f"CIFAR-100 (default resnet8): {', '.join(model_dict)}; ImageNet (default resnet18_imagenet): "
                        f"{', '.join(imagenet_model_dict)}")
    g.add_argument("--distill", type=str, default="kd",
                   help=f"one of {', '.join(METHODS)} (aliases: {', '.join(ALIASES) or 'none'})")
    g.add_argument("--trial", type=str, default="1", help="trial id (part of the run folder; default seed)")
    g.add_argument("-r", "--gamma", type=float, default=None, help="weight of cross-entropy (default: the method's)")
    g.add_argument("-a", "--alpha", type=float, default=None, help="weight of KD (default: the method's)")
    g.add_argument("-b", "--beta", type=float, default=None, help="weight of the method's loss (default: the method's)")
    g.add_argument("--teacher_bf16", action="store_true",
                   help="run the frozen teacher in bf16 autocast, outputs cast back to float32 "
                        "(faster; changes numerics; the student stays float32 unless --amp)")
    add_method_arguments(p)
    add_training_arguments(p, compile_help="torch.compile the student and the teacher")
    opt = p.parse_args(argv)
    method = method_named(opt.distill)
    if method is None:
        raise UsageError(f"unknown --distill '{opt.distill}'; valid methods: {', '.join(METHODS)}")
    opt.distill = method.name
    check_model_name(opt, "model_s", cifar_default="resnet8")
    method.finalize_options(opt)
    return finalize_training_arguments(opt, opt.model_s)


def main(argv=None):
    from dataset import data_is_generated, make_loaders, num_classes
    from distiller_zoo import METHODS, flags_without_effect, speed_flags
    from distiller_zoo.base import resolve_weights
    from helper.loops import evaluate
    from helper.model_setup import prepare_model
    from helper.run_folder import student_folder, student_identity
    from helper.run_start import read_data, start_processes, warn_if_generated
    from helper.teacher import load_teacher, weights_fingerprint
    from helper.trainer import Trainer, check_run_folder
    from helper.util import seed_everything
    from models import build_model

    opt = parse_args(argv)
    procs, device, say = start_processes(opt)
    for flag, reason in flags_without_effect(opt).items():
        say(f"note: {flag} is accepted for the PACKD authors' commands but has no effect: {reason}")
    method = METHODS[opt.distill]
    opt.num_classes = num_classes(opt)
    teacher, opt.model_t = load_teacher(opt.path_t, opt.model_t, num_classes=opt.num_classes,
                                        trust=opt.trust_checkpoint)
    method.resolve_pair_settings(opt)
    weights = resolve_weights(method, opt)
    opt.gamma, opt.alpha, opt.beta = weights["gamma"], weights["alpha"], weights["beta"]
    opt.generated_data = data_is_generated(opt)
    teacher_weights = weights_fingerprint(teacher)
    run_dir = student_folder(opt, method)
    identity = student_identity(opt, teacher_weights, ignore=speed_flags())
    resume_path = check_run_folder(run_dir, opt, identity, log=say)
    opt.teacher_weights = teacher_weights  # methods that cache teacher-derived state key it by this
    seed_everything(opt.seed, opt.deterministic)
    data = read_data(opt, procs)
    train_loader, test_loader = make_loaders(opt, data, device, method.needs_for(opt), procs.rank, procs.world_size)
    opt.n_data = train_loader.num_samples
    opt.steps_per_epoch = len(train_loader)
    teacher = prepare_model(teacher, opt, device)  # device, channels_last, compile: as the student
    teacher_acc = evaluate(teacher, test_loader, device, amp=opt.amp or opt.teacher_bf16)["test_acc"]
    say(f"teacher {opt.model_t} from '{opt.path_t}' (weights {teacher_weights}): test top-1 {teacher_acc:.2f}")
    student = prepare_model(build_model(opt.model_s, opt.num_classes), opt, device)
    distiller = method(student, teacher, opt).to(device)
    say(f"distilling {opt.model_t} -> {opt.model_s} with {method.title()}: loss = {distiller.describe_loss()} "
          f"(each term logged as loss_<name>, already weighted)")
    warn_if_generated(opt, say)
    where = f"{procs.world_size} processes (global batch {opt.batch_size})" if procs.distributed else "device"
    say(f"{opt.n_data} training images, {len(train_loader)} steps per epoch, {where} {device}; run folder '{run_dir}'")
    run_info = {**vars(opt), "kind": "student", "teacher_acc": teacher_acc, "device": str(device),
                "world_size": procs.world_size,
                "epochs": opt.epochs + (1 if distiller.forward_only_first_epoch else 0), "identity": identity}
    trainer = Trainer(opt, distiller, train_loader, test_loader, run_dir, opt.model_s, identity, run_info, device,
                      log=say, procs=procs)
    trainer.fit(resume_path)


if __name__ == "__main__":
    run_guarded(main)
