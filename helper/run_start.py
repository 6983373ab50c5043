"""What both entry points (train_teacher.py, train_student.py) do before they build models:
start the processes, read the data with rank 0 first, and warn about a generated data set."""
from helper import distributed
from helper.util import resolve_device
from util import malloc


def start_processes(opt):
    """-> (procs, device, say): the process group under torchrun (else one process), the CPU's
    malloc tuning, and `say`, which prints on rank 0 alone."""
    procs, device = distributed.start(resolve_device(opt.device), opt.dist_timeout)
    if device.type == "cpu":
        malloc.keep_freed_memory()  # glibc: keep freed activation memory in the process (~25% faster steps)
    say = print if procs.is_main else (lambda *a, **k: None)
    return procs, device, say


def read_data(opt, procs):
    """`dataset.load_data(opt)`, rank 0 first: it alone downloads or generates the data."""
    from dataset import load_data
    if not procs.is_main:
        distributed.barrier()
    data = load_data(opt)
    if procs.is_main:
        distributed.barrier()
    return data


def warn_if_generated(opt, say):
    if opt.generated_data:
        say(f"WARNING: '{opt.data_folder}' holds a GENERATED data set, not CIFAR-100: for trying the code only; "
            f"the run records generated_data=true")
