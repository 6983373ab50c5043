"""`--dataset imagenet` for the benchmark: an ImageNet-layout JPEG folder, or a generated one.

With --data_folder the benchmark reads that folder as train_student.py does (`dataset.load_data`,
`dataset.make_loaders`: DataLoader workers or DALI). Without it, a generated set
(`dataset.imagenet.write_generated_imagenet`: JPEGs of --image_size, 375x500 by default,
ImageNet's most common size) is written once into a temporary folder, split over the cores
since JPEG encoding is the cost, and deleted at the end; with --generate_data it is written
into --data_folder when that holds none, and kept for later runs. A generated set is said
to be one in every line and field that describes the data: it stands in for ImageNet-1k's
speed only, so the models keep ImageNet's 1000 classes and the run is projected for
ImageNet-1k's sizes.

An ImageNet loader pays a start per pass (DataLoader workers refill their queues, DALI builds
its pipeline) that a 5005-step epoch amortises and a timed window of a few steps would not:
the loaders are handed on as `ContinuingLoader`s, which go on with the pass where the last
window stopped. A generated set holds enough batches by default that no timed window starts
a pass (`default_sizes`); data-path rows of DataLoader workers time whole waves of batches
(`data_path_timing`).
"""
import math
import os
import shutil
import tempfile
import time

from util.errors import UsageError

from .data_path import data_path_warmup

IMAGENET_TRAIN_SIZE = 1_281_167
IMAGENET_VAL_SIZE = 50_000
IMAGENET_CLASSES = 1000
DEFAULT_TEACHER = "resnet34_imagenet"
DEFAULT_STUDENT = "resnet18_imagenet"
DEFAULT_IMAGE_SIZE = (375, 500)  # height x width: ImageNet's most common JPEG size
DEFAULT_GENERATED_CLASSES = 100
TEMPORARY_PREFIX = "bench_imagenet_"  # the temporary folder of a generated set, in $TMPDIR


# -- options ------------------------------------------------------------------------------
def data_flags(args):
    """-> (train_student.py's data flags, classes of the models) for --dataset imagenet, with the
    ImageNet defaults filled into `args` (those train_student.py has, it fills itself);
    UsageError for a combination that makes no sense."""
    from models import imagenet_model_dict
    if args.loader == "device":
        raise UsageError("--loader device holds CIFAR-100 on the device; --dataset imagenet reads JPEGs with "
                         "--loader torch, dali or auto (the default)")
    args.model_t = args.model_t or DEFAULT_TEACHER
    args.model_s = args.model_s or DEFAULT_STUDENT
    if args.model_t not in imagenet_model_dict:
        raise UsageError(f"unknown --model_t '{args.model_t}' for --dataset imagenet; valid names: "
                         f"{', '.join(imagenet_model_dict)}")
    folder = args.data_folder
    if folder is not None and not os.path.isdir(folder) and not args.generate_data:
        raise UsageError(f"--data_folder '{folder}' does not exist: name an ImageNet-layout folder, add "
                         f"--generate_data to write a generated set there, or drop --data_folder to time one in a "
                         f"temporary folder")
    if will_be_generated(args):  # its sizes are filled when it is written (`default_sizes`)
        args.image_size = args.image_size or DEFAULT_IMAGE_SIZE
        args.generated_classes = args.generated_classes or DEFAULT_GENERATED_CLASSES
        num_classes = IMAGENET_CLASSES
    else:
        from types import SimpleNamespace

        from dataset import num_classes as folder_classes
        num_classes = folder_classes(SimpleNamespace(dataset="imagenet", data_folder=folder))
    flags = ["--dataset", "imagenet"]
    for name in ("data_folder", "num_workers", "epochs"):
        if getattr(args, name) is not None:
            flags += [f"--{name}", str(getattr(args, name))]
    if args.loader in ("torch", "dali"):
        flags += ["--loader", args.loader]
    return flags, num_classes


def check_loader(args, needs):
    """Refuse before anything is written: DALI builds no extra views (PACKD's)."""
    from dataset.batch import VIEWS
    if args.loader == "dali" and VIEWS in needs:
        raise UsageError(f"--loader dali cannot build {args.distill}'s extra views (it needs '{VIEWS}'); use "
                         f"--loader torch or auto")


def will_be_generated(args):
    """Whether the run reads a generated set: one it writes, or one already in --data_folder."""
    from dataset.imagenet import is_generated
    folder = args.data_folder
    if folder is None:
        return True
    return is_generated(folder) or (args.generate_data and not os.path.isdir(os.path.join(folder, "train")))


def default_sizes(args, num_workers):
    """(training, validation) images of a generated set when --n_data / --n_test are not given:
    as many batches as a pass-continuing loader gives before its timed windows end (the
    training steps, or a data-path row: both after their warm-up), and one evaluation's.
    `num_workers`: the training loader's. A set kept for later runs (--generate_data) is sized
    for all of them, whatever --data_only or --skip_data_path says for this one."""
    kept = args.generate_data
    train_batches = [1]
    if kept or not args.data_only:
        train_batches.append(args.warmup + args.steps * args.repeats)
    if kept or not args.skip_data_path:
        for workers in {*args.data_workers, num_workers}:
            warmup, steps = data_path_timing(args, workers)
            train_batches.append(warmup + steps * args.repeats)
    eval_batches = 0 if args.data_only and not kept else args.steps if args.eval_steps is None else args.eval_steps
    return args.batch_size * max(train_batches), args.batch_size * (1 + eval_batches * args.repeats)


def data_path_timing(args, workers):
    """(warm-up, timed) batches of a data-path row whose loader has `workers` DataLoader workers.

    The workers start together and take about as long per batch, so they hand their batches
    over in waves, one per worker: a window that starts or ends inside a wave counts batches
    decoded outside it (up to a wave: 16 of 20 batches with 16 workers). With more than one
    worker a row warms up for at least one whole wave and times whole waves."""
    warmup, steps = data_path_warmup(args), args.data_steps or args.steps
    if workers <= 1:
        return warmup, steps
    return _whole_waves(max(warmup, workers), workers), _whole_waves(steps, workers)


def _whole_waves(batches, workers):
    return -(-batches // workers) * workers


# -- the generated set ----------------------------------------------------------------------
def write_generated_set(root, n_train, n_val, classes, size, seed=0, processes=None):
    """`write_generated_imagenet` into `root`: at least `n_train` / `n_val` images in at most `classes`
    classes, split over `processes` processes (default: the cores this process may use);
    -> what was written ({"train", "val", "classes", "seconds", ...})."""
    import multiprocessing
    root = os.path.abspath(root)
    classes = max(1, min(classes, n_train, n_val))
    per_class, val_per_class = math.ceil(n_train / classes), math.ceil(n_val / classes)  # at least as asked
    processes = max(1, min(processes or _usable_cores(), classes))
    if "fork" not in multiprocessing.get_all_start_methods():
        processes = 1
    shares = [classes // processes + (k < classes % processes) for k in range(processes)]
    parts = [root] + [f"{root}.part{k}" for k in range(1, processes)]  # beside root, merged into it
    jobs = [(part, share, per_class, val_per_class, tuple(size), seed + k) for k, (part, share) in
            enumerate(zip(parts, shares))]
    start = time.perf_counter()
    if processes == 1:
        _write_part(jobs[0])
    else:
        from concurrent.futures import ProcessPoolExecutor
        # fork: the workers need nothing but numpy and PIL, and start at once
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(_write_part, jobs))
        _merge_parts(root, parts[1:])
    return {"train": classes * per_class, "val": classes * val_per_class, "classes": classes,
            "image_size": list(size), "seconds": time.perf_counter() - start, "processes": processes}


def _write_part(job):
    from dataset.imagenet import write_generated_imagenet
    root, classes, per_class, val_per_class, size, seed = job
    write_generated_imagenet(root, classes=classes, per_class=per_class, val_per_class=val_per_class, size=size,
                             seed=seed)


def _merge_parts(root, parts):
    """Move the class folders of `parts` into `root`, numbered on after root's own (class names are
    sorted to labels, so each keeps its own label)."""
    for split in ("train", "val"):
        target = os.path.join(root, split)
        count = len(os.listdir(target))
        for part in parts:
            for name in sorted(os.listdir(os.path.join(part, split))):
                os.rename(os.path.join(part, split, name), os.path.join(target, f"n{count:08d}"))
                count += 1
    for part in parts:
        shutil.rmtree(part)


def _usable_cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# -- loaders --------------------------------------------------------------------------------
class ContinuingLoader:
    """`loader`, whose `iterate()` goes on with the pass where the previous one stopped (a new pass
    once it has ended): a timed window then holds no pass start unless a pass ends inside it.
    Everything else (len, num_samples, negatives, views, unsharded, ...) is the loader's."""

    def __init__(self, loader):
        self.loader = loader
        self._batches = iter(())

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        return self.iterate()

    def iterate(self, skip=0):
        """`skip` is accepted for the loader interface; the pass goes on where it stopped."""
        while True:
            for batch in self._batches:  # a plain loop: abandoning this generator leaves the pass open
                yield batch
            self._batches = iter(self.loader.iterate())  # the loaders refuse an empty split


# -- what run.py asks of a data set (as cifar.CifarData) -------------------------------------
class ImageNetData:
    """An ImageNet-layout folder for one run: written first when generated, deleted at the end
    when it was written into a temporary folder (after every rank is done with it)."""

    def __init__(self, args, opt):
        self.args, self.opt = args, opt
        self.temporary = None  # TemporaryDirectory of a set written for this run only
        self.written = None    # what this run wrote (write_generated_set's answer)
        self.generated = None
        self.data = None
        self.loader_kind = None
        self.needs = frozenset()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if self.args.data_folder is None and exc_type is None:  # every rank, rank 0 alone holds the folder
            from helper import distributed
            distributed.barrier()  # no rank reads the set any more
        if self.temporary is not None:
            self.temporary.cleanup()
        return False

    def load(self, procs, log):
        """Write the generated set (rank 0; the others wait for its path), then read the folder."""
        from dataset import load_data
        from dataset.imagenet import is_generated, scan_imagenet
        from helper import distributed
        args = self.args
        root = args.data_folder
        if procs.is_main and (root is None or (will_be_generated(args) and not is_generated(root))):
            if root is None:
                self.temporary = tempfile.TemporaryDirectory(prefix=TEMPORARY_PREFIX)
                root = os.path.join(self.temporary.name, "generated")
            n_data, n_test = default_sizes(args, self.opt.num_workers)
            self.written = write_generated_set(root, args.n_data or n_data, args.n_test or n_test,
                                               args.generated_classes, args.image_size, seed=self.opt.seed)
            log(written_line(self.written, "a temporary folder" if self.temporary else f"'{root}'"))
        root = distributed.gather_objects(root)[0]  # the other ranks wait here for rank 0's set
        self.opt.data_folder = root
        self.generated = is_generated(root)
        if args.data_folder is None:  # a temporary set: no cached listing, it is never read again
            classes, train, val = scan_imagenet(root, cache_dir=False)
            self.data = {"train": train, "test": val, "classes": classes}
        else:
            self.data = load_data(self.opt)
        return self.data

    def loaders(self, data, device, needs, procs):
        from dataset import make_loaders
        from dataset.imagenet import ImageNetLoader
        train, test = make_loaders(self.opt, data, device, needs, procs.rank, procs.world_size)
        self.loader_kind = "torch" if isinstance(train, ImageNetLoader) else "dali"
        self.needs = frozenset(needs)
        return ContinuingLoader(train), ContinuingLoader(test)

    def fields(self):
        return {"dataset": "imagenet", "generated": self.generated,
                "data_folder": self.args.data_folder,
                "n_data": len(self.data["train"]), "n_test": len(self.data["test"]),
                "data_classes": len(self.data["classes"]), "num_classes": self.opt.num_classes,
                "image_size": self.written["image_size"] if self.written else None,
                "generated_set_written": self.written, "loader_used": self.loader_kind,
                "loader_workers": loader_workers(self.loader_kind, self.opt.num_workers),
                "projected_for": self._projected_sizes()}

    def _projected_sizes(self):
        if self.generated:
            return {"train_images": IMAGENET_TRAIN_SIZE, "val_images": IMAGENET_VAL_SIZE,
                    "of": "ImageNet-1k (the generated set stands in for it)"}
        return {"train_images": len(self.data["train"]), "val_images": len(self.data["test"]), "of": "this folder"}

    def notes(self):
        from dataset.batch import CONTRAST_INDEX
        sizes = self._projected_sizes()
        n_train = len(self.data["train"])
        if self.generated:
            what = [f"GENERATED JPEGs in the ImageNet layout, not ImageNet ({self._counts()}): speed only (decoding "
                    f"depends on the JPEG size, not on the pixels); the models keep ImageNet's {IMAGENET_CLASSES} "
                    f"classes"]
            if CONTRAST_INDEX in self.needs:
                what.append(f"memory banks hold the generated set's {n_train:,} rows, not ImageNet's "
                            f"{IMAGENET_TRAIN_SIZE:,}")
        else:
            what = [f"ImageNet-layout folder '{self.opt.data_folder}' ({self._counts()})"]
        return [*what, f"epochs projected for {sizes['of']}: {sizes['train_images']:,} training / "
                       f"{sizes['val_images']:,} validation images",
                f"the loaders go on with one pass across timing windows ({n_train:,} training images a pass)"]

    def _counts(self):
        size = self.written["image_size"] if self.written else None
        return (f"{len(self.data['train']):,} training / {len(self.data['test']):,} validation images, "
                f"{len(self.data['classes'])} classes" + (f", {size[0]}x{size[1]}" if size else ""))

    def lines(self):
        kind = "GENERATED (not ImageNet)" if self.generated else f"'{self.opt.data_folder}'"
        return [f"data: ImageNet layout, {kind}: {self._counts()}; training loader {self.loader_kind} "
                f"({workers_text(self.loader_kind, self.opt.num_workers)})"]

    def epoch_batches(self, train_loader, test_loader):
        """(training steps, test batches) of an epoch of the projected run: ImageNet-1k's for a
        generated set, the folder's own otherwise."""
        sizes = self._projected_sizes()
        return (math.ceil(sizes["train_images"] / train_loader.batch_size),
                math.ceil(sizes["val_images"] / test_loader.batch_size))

    def time_data_path(self, opt, data, device, train_loader, needs):
        from .imagenet_data_path import time_imagenet_data_path
        return time_imagenet_data_path(self.args, opt, data, device, needs)

    def data_path_lines(self, out):
        from .imagenet_data_path import imagenet_data_path_lines
        return imagenet_data_path_lines(out, self.opt.distill)


def loader_workers(kind, num_workers):
    """Workers of the DataLoader path, or DALI's threads (at least one)."""
    return max(num_workers, 1) if kind == "dali" else num_workers


def workers_text(kind, num_workers):
    count = loader_workers(kind, num_workers)
    unit = "thread" if kind == "dali" else "worker"
    return f"{count} {unit}{'' if count == 1 else 's'}"


def written_line(written, where):
    return (f"generated data: wrote {written['train']:,} training + {written['val']:,} validation JPEGs of "
            f"{written['image_size'][0]}x{written['image_size'][1]} ({written['classes']} classes) to {where} in "
            f"{written['seconds']:.1f}s ({written['processes']} processes); it is not ImageNet")
