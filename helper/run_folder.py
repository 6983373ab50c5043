"""Which experiment a run folder holds, and how a new command may use it.

A run's identity is every setting that changes what is trained: model names, method,
teacher weights (fingerprint), data set (real or generated), and every flag except the
ones listed in `SPEED_AND_LOGGING` (and a method's own `speed_flags` / `no_effect_flags`).
Resuming, or reusing a finished run, is allowed only when the identities are equal;
otherwise the command is refused in one line naming the differing flags.
"""
import os

from helper.checkpoint import plain
from util.errors import UsageError

LATEST = "latest.pth"
SUMMARY = "summary.json"
RUN_INFO = "run.json"

# Flags that change only speed, logs or where files live, never the trained weights
# (`--amp`, `--teacher_bf16` are not here: bf16 changes the numerics of what is trained).
SPEED_AND_LOGGING = frozenset({
    "print_freq", "tb_freq", "save_freq", "test_batch_size", "num_workers", "loader", "device",
    "channels_last", "compile", "compile_mode", "deterministic", "no_progress", "no_tensorboard",
    "data_folder", "generate_data", "save_dir", "resume", "overwrite", "trust_checkpoint", "dist_timeout",
})
# Named in the identity's own fields (or, for the trial, in the folder name; its seed is a setting).
NAMED_ELSEWHERE = frozenset({"model", "model_s", "model_t", "distill", "path_t", "trial", "teacher_weights"})


def run_settings(opt, ignore=()):
    """{flag: value} of every setting of `opt` that changes what is trained."""
    skip = SPEED_AND_LOGGING | NAMED_ELSEWHERE | set(ignore)
    return {k: plain(v) for k, v in sorted(vars(opt).items()) if k not in skip}


def student_identity(opt, teacher_weights, ignore=()):
    return {"kind": "student", "model_s": opt.model_s, "model_t": opt.model_t, "distill": opt.distill,
            "teacher_weights": teacher_weights, "settings": run_settings(opt, ignore)}


def teacher_identity(opt):
    return {"kind": "teacher", "model": opt.model, "dataset": opt.dataset, "settings": run_settings(opt)}


def student_folder(opt, method):
    """RepDistiller's `S:<s>_T:<t>_<dataset>_<method>_r:<g>_a:<a>_b:<b>_<trial>`, with the method's
    ablation tags (PACKD's `ag:` ...) before the trial, so two ablations never share a folder."""
    parts = [f"S:{opt.model_s}", f"T:{opt.model_t}", opt.dataset, opt.distill,
             f"r:{opt.gamma}", f"a:{opt.alpha}", f"b:{opt.beta}", *method.folder_tags(opt), str(opt.trial)]
    return os.path.join(opt.save_dir, "student_model", "_".join(parts))


def teacher_folder(opt):
    name = f"{opt.model}_{opt.dataset}_lr_{opt.learning_rate}_decay_{opt.weight_decay}_trial_{opt.trial}"
    return os.path.join(opt.save_dir, "models", name)


def identity_differences(theirs, mine):
    """[(what, theirs, mine)] for every entry that differs; settings flag by flag.

    A setting the older run did not record (a flag added since) is not a difference."""
    out = []
    for key, value in mine.items():
        if key == "settings":
            continue
        if key in theirs and theirs[key] != value:
            out.append((key, theirs[key], value))
    ours, recorded = mine.get("settings", {}), theirs.get("settings")
    if isinstance(recorded, dict):
        for flag, value in ours.items():
            if flag in recorded and recorded[flag] != value:
                out.append(("--" + flag, recorded[flag], value))
    return out


def describe_differences(differences):
    return ", ".join(f"{what} {theirs!r} there, {mine!r} now" for what, theirs, mine in differences)


def check_identity(path, theirs, mine, log=print):
    """UsageError naming each differing setting unless the run at `path` is this experiment."""
    if not theirs:
        log(f"note: '{path}' records no run identity (an old checkpoint); its settings are not verified")
        return
    if "settings" not in theirs:
        log(f"note: '{path}' predates the settings check; only its models, method and teacher are verified")
    differences = identity_differences(theirs, mine)
    if differences:
        raise UsageError(f"'{path}' is a run of other settings ({describe_differences(differences)}); use "
                         f"--overwrite to train this folder again with the new settings, or another --trial "
                         f"for a run of its own")


def check_run_folder(run_dir, opt, identity, read_checkpoint, log=print):
    """Decide how a run folder may be used, before anything is written to it.

    read_checkpoint(path) -> a checkpoint dict with ckpt["run"]["identity"].
    Returns the checkpoint path to resume from, or None for a fresh start.
    """
    summary = os.path.join(run_dir, SUMMARY)
    resume = getattr(opt, "resume", None)
    overwrite = getattr(opt, "overwrite", False)
    if resume is not None and not str(resume).strip():
        raise UsageError("--resume needs a checkpoint path or 'auto'")
    if resume and not overwrite:
        path = os.path.join(run_dir, LATEST) if resume == "auto" else resume
        if resume == "auto" and not os.path.isfile(path):
            if os.path.isfile(summary):
                raise UsageError(f"'{run_dir}' holds a finished run without {LATEST}; use --overwrite to "
                                 f"train again or another --trial")
            return None  # nothing to resume: a fresh start
        ckpt = read_checkpoint(path)
        check_identity(path, ckpt["run"].get("identity", {}), identity, log)
        return path
    if os.path.isfile(summary) and not overwrite:
        raise UsageError(f"'{run_dir}' already holds a finished run; use --resume auto to reuse it, "
                         f"--overwrite to train again, or another --trial")
    return None
