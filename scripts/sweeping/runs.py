"""What to run: the benchmark's pairs and teachers, the methods from the registry, one Run
(log name + command) per trial x method x pair, and the teacher checkpoints they use."""
import sys
from dataclasses import dataclass

from scripts.sweeping.config import ConfigError, words

ALL_PAIRS = ("wrn_40_2:wrn_16_2 wrn_40_2:wrn_40_1 resnet56:resnet20 resnet110:resnet32 resnet32x4:resnet8x4 "
             "vgg13:vgg8 vgg13:MobileNetV2 ResNet50:MobileNetV2 ResNet50:vgg8 resnet32x4:ShuffleV1 "
             "resnet32x4:ShuffleV2 wrn_40_2:ShuffleV1").split()
TEACHERS = ("wrn_40_2", "resnet56", "resnet110", "resnet32x4", "vgg13", "ResNet50")
DEFAULT_METHODS = "packd"


@dataclass
class Run:
    name: str   # the log and marker file names: LOG_DIR/<name>.log, LOG_DIR/<name>.done
    args: list  # after $PYTHON: the script and its arguments


def load_methods():
    """The `--distill` name -> Distiller class registry: a new method file shows up here
    with no edit to the sweep."""
    try:
        from distiller_zoo import METHODS
    except Exception as e:  # noqa: BLE001 - torch missing, a broken method file: say which
        raise ConfigError(f"cannot load the methods from distiller_zoo under {sys.executable} "
                          f"({type(e).__name__}: {e}); set SWEEP_PYTHON to the training environment's python")
    return METHODS


def method_flags(cls, pair=None, variant_args=()):
    """The weights a method was benchmarked with, then its extra sweep flags (and a variant's).

    The weights are the ones train_student.py would use when none are given: for a pair, as
    the class resolves them for it (a per-pair recipe, e.g. logit standardization's KD
    weight), else `default_weights`; writing them out keeps each command self-explanatory
    in logs and markers.
    """
    extra = [str(x) for x in (*getattr(cls, "sweep_args", ()), *variant_args)]
    w = (pair_weights(cls, pair, extra) if pair is not None else None) or cls.default_weights
    return ["-r", f"{w['gamma']:g}", "-a", f"{w['alpha']:g}", "-b", f"{w['beta']:g}", *extra]


def pair_weights(cls, pair, extra):
    """gamma/alpha/beta as train_student.py resolves them for (teacher, student) and these
    flags; None for a class the training script does not know (e.g. a test's stand-in)."""
    try:
        import train_student
        from distiller_zoo.base import resolve_weights
        from util.errors import UsageError
    except ImportError:
        return None
    teacher, student = pair
    try:
        opt = train_student.parse_args(["--path_t", "unused", "--distill", cls.name, "--model_s", student, *extra])
    except (UsageError, SystemExit):
        return None
    opt.model_t = teacher
    cls.resolve_pair_settings(opt)
    return resolve_weights(cls, opt)


def split_variant(entry, registry):
    """METHODS entry 'kd' or 'kd+ls' -> (class, variant CLI words); a variant is one of the
    class's `sweep_variants` (e.g. logit standardization: {"ls": ("--logit_stand",)})."""
    name, _, variant = entry.partition("+")
    cls = registry[name]
    if not variant:
        return cls, ()
    variants = getattr(cls, "sweep_variants", {}) or {}
    if variant not in variants:
        raise ConfigError(f"method '{name}' has no variant '+{variant}' in METHODS; its variants: "
                          f"{' '.join('+' + v for v in variants) or 'none'}")
    return cls, tuple(variants[variant])


def parse_methods(text, registry):
    """METHODS -> names in order, each once (a name twice would run twice in one folder)."""
    methods = list(dict.fromkeys(words(text)))
    if not methods:
        raise ConfigError("METHODS is empty")
    for m in methods:
        if m.partition("+")[0] not in registry:
            raise ConfigError(f"unknown method '{m}' in METHODS; use any of {' '.join(registry)}")
        split_variant(m, registry)  # an unknown variant is a configuration error too
    return methods


def parse_pairs(text):
    """PAIRS -> (teacher, student) in order, each once."""
    pairs = []
    for pair in dict.fromkeys(words(text)):
        teacher, sep, student = pair.partition(":")
        if not sep or not teacher or not student or ":" in student:
            raise ConfigError(f"PAIRS entry '{pair}' is not teacher:student (e.g. PAIRS=resnet56:resnet20,vgg13:vgg8)")
        pairs.append((teacher, student))
    if not pairs:
        raise ConfigError("PAIRS is empty")
    return pairs


def pair_refusal(cls, teacher, student):
    """The method's one-line refusal of the pair (FSP and KDSVD: feature widths differ), judged
    on the two models built on the meta device (shapes only: no memory, no weights). None when
    the method applies, or when train_student.py is to judge (a class without the check, a
    model name the zoo does not know)."""
    try:
        import torch
        from dataset.cifar import NUM_CLASSES
        from distiller_zoo.base import Distiller
        from models import model_dict
    except ImportError:
        return None
    if not issubclass(cls, Distiller) or cls.pair_refusal.__func__ is Distiller.pair_refusal.__func__:
        return None  # the default applies to every pair: no model to build
    if teacher not in model_dict or student not in model_dict:
        return None
    with torch.device("meta"):
        models = model_dict[student](num_classes=NUM_CLASSES), model_dict[teacher](num_classes=NUM_CLASSES)
    return cls.pair_refusal(*models)


def distill_runs(config, methods, pairs, registry, teacher_paths):
    """One run per trial x method x pair whose teacher was found (teacher_paths[t] not None),
    except the pairs a method refuses (listed once as not applicable, as the papers' tables
    leave those cells empty)."""
    runs = []
    flags = {}  # (method, pair) -> (class, flags) or None when refused: the same for every trial
    for trial in range(config.trials):
        for method in methods:
            for teacher, student in pairs:
                path_t = teacher_paths.get(teacher)
                if path_t is None:
                    continue
                if (method, teacher, student) not in flags:
                    cls, variant_args = split_variant(method, registry)
                    refusal = pair_refusal(cls, teacher, student)
                    if refusal:
                        print(f"n/a {teacher}-{student}_{method}: {refusal}", file=sys.stderr)
                    flags[method, teacher, student] = None if refusal else (
                        cls, method_flags(cls, (teacher, student), variant_args))
                if flags[method, teacher, student] is None:
                    continue
                cls, method_args = flags[method, teacher, student]
                runs.append(Run(f"{teacher}-{student}_{method}_trial_{trial}",
                                ["train_student.py", "--path_t", path_t, "--model_s", student, "--distill", cls.name,
                                 *method_args, "--trial", str(trial),
                                 "--save_dir", config.save_dir, *config.resume_args, *config.extra_args]))
    return runs


def vanilla_runs(config, models):
    return [Run(f"teacher_{model}_trial_{trial}",
                ["train_teacher.py", "--model", model, "--trial", str(trial), "--save_dir", config.save_dir,
                 *config.resume_args, *config.extra_args])
            for trial in range(config.trials) for model in models]


def locate_teachers(teachers, save_t, save_dir, layout):
    """-> {teacher: checkpoint path or None}, saying which file (and accuracy) each uses,
    or where a missing one was looked for."""
    from helper.teacher import find_teacher, recorded_accuracy, teacher_search_places
    found = {}
    for t in dict.fromkeys(teachers):
        path = find_teacher(t, save_t, save_dir, layout)
        found[t] = path
        if path is None:
            print(f"error: no checkpoint of teacher '{t}'; looked for:", file=sys.stderr)
            for place in teacher_search_places(t, save_t, save_dir, layout):
                print(f"    {place}", file=sys.stderr)
            print("  fetch the released teachers (sh scripts/fetch_teachers.sh) or train it "
                  "(sh scripts/run_vanilla.sh); skipping the runs with this teacher", file=sys.stderr)
            continue
        acc, source = recorded_accuracy(path)
        shown = f"test top-1 {acc:.2f} (from {source})" if acc is not None else "accuracy not recorded"
        print(f"teacher {t}: {path}, {shown}", file=sys.stderr)
    return found
