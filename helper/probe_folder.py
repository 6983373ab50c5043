"""Which linear probe a transfer run folder holds (eval_rep.py), and what it records there.

Its identity follows helper/run_folder.py: every setting that changes the probe's weights, with
the same speed/logging flags left out (`run_settings`) and the same one-line refusal naming the
differing flags. Only the policy differs from a training run's `check_run_folder`: a probe is
short and never resumed, so a finished probe of the same settings is reported and kept, and an
unfinished one starts over.
"""
import os

from helper.checkpoint import plain
from helper.run_folder import RUN_INFO, SUMMARY, describe_differences, identity_differences, run_settings
from util.atomic import read_json_object
from util.errors import UsageError

# Beyond run_folder's speed and logging flags: the backbone's batch only changes speed; the student's
# checkpoint is named by its weights' fingerprint, the data set by its own field.
NAMED_BY_THE_PROBE = frozenset({"feature_batch_size", "path_s", "checkpoint", "dataset"})
PROBE_WEIGHTS = "linear_last.pth"
RECIPE_SOURCE = ("smuelpeng/PACKD code/eval_rep_base.py (code/scripts/eval_rep_STL10.sh, "
                 "code/scripts/eval_rep_TinyImageNet200.sh)")


def transfer_folder(opt, student):
    """<save_dir>/transfer/<dataset>_<student run folder>[_<checkpoint>]_<trial>; the checkpoint's
    tag ('last', 'ckpt_epoch_240', ...) is left out for <model>_best.pth, the authors' choice."""
    parts = [opt.dataset, student.run_name] + ([student.tag] if student.tag else []) + [str(opt.trial)]
    return os.path.join(opt.save_dir, "transfer", "_".join(parts))


def transfer_identity(opt, student, generated):
    return {"kind": "transfer", "dataset": opt.dataset, "model_s": student.name,
            "student_weights": student.fingerprint, "generated_data": bool(generated),
            "settings": run_settings(opt, ignore=NAMED_BY_THE_PROBE)}


def check_transfer_folder(run_dir, identity, overwrite, log=print):
    """-> the finished run's summary when this experiment already ran there (nothing is redone), else None.

    A finished run of other settings is refused in one line unless --overwrite."""
    summary_path = os.path.join(run_dir, SUMMARY)
    if overwrite or not os.path.isfile(summary_path):
        return None
    theirs = read_json_object(os.path.join(run_dir, RUN_INFO)).get("identity") or {}
    differences = identity_differences(theirs, identity)
    if differences:
        raise UsageError(f"'{run_dir}' holds a finished probe of other settings ({describe_differences(differences)}); "
                         f"use --overwrite to evaluate this folder again, or another --trial")
    summary = read_json_object(summary_path)
    log(f"already finished: this probe of the same settings ended with test top-1 {summary.get('last_acc')} "
        f"(best {summary.get('best_acc')}); run folder '{run_dir}' (nothing rewritten; --overwrite evaluates again)")
    return summary


def transfer_run_info(opt, student, data, device, generated, identity):
    """run.json: the flags, the recipe's source, the student (with a copy of its own run.json for
    scripts/summarize.py), the data set's size and whether it is generated, the identity."""
    return {**vars(opt), "kind": "transfer", "recipe": RECIPE_SOURCE, "model_s": student.name,
            "student_checkpoint": student.path, "student_weights": student.fingerprint,
            "student_run": student.run_name, "student_checkpoint_tag": student.tag or "best",
            "student": student.run_info, "num_classes": len(data["classes"]),
            "n_train": len(data["train"][1]), "n_test": len(data["test"][1]), "device": str(device),
            "generated_data": bool(generated), "identity": identity,
            "resampling": "Pillow bilinear, horizontal pass first (Pillow <= 12, the authors' time)"}


def start_transfer_folder(run_dir, run_info, tensorboard=True):
    """-> the RunLog of a fresh probe in `run_dir`: the last run's summary, weights and metrics
    removed (an unfinished probe starts over), run.json written."""
    from helper.run_log import RunLog
    from util.atomic import remove_stale_temp_files
    os.makedirs(run_dir, exist_ok=True)
    remove_stale_temp_files(run_dir)
    for stale in (SUMMARY, PROBE_WEIGHTS):
        if os.path.exists(os.path.join(run_dir, stale)):
            os.unlink(os.path.join(run_dir, stale))
    run_log = RunLog(run_dir, tensorboard=tensorboard)
    run_log.forget_metrics()
    run_log.open(plain(run_info))
    return run_log
