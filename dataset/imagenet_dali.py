"""The ImageNet loader on NVIDIA DALI (optional: `pip install -r requirements-imagenet.txt`).

Same interface, order and sharding as `dataset.imagenet.ImageNetLoader` (the same
`EpochPlanner`): every epoch, this rank's part of the seeded global permutation is handed
to `fn.readers.file` as an explicit file list (no reader shuffle, no `shard_id`), so DALI
reads exactly the samples, in exactly the order, that the DataLoader path would. JPEGs are
decoded by `fn.decoders.image` ("mixed": nvJPEG on the GPU when the loader's device is
CUDA; "cpu" otherwise), then `fn.random_resized_crop` (scale 0.08-1, aspect 3/4-4/3) and
`fn.crop_mirror_normalize` with a random mirror for training, `fn.resize(resize_shorter=256)`
+ a 224 centre crop for evaluation; batches come out normalised float32 on the device.

The pipeline is built for each pass over the data (it holds that pass's file list), seeded
from the epoch's draw. DALI's random crops cannot be tied to single samples, so a pass
resumed with `iterate(skip)` replays the order exactly but draws other crops and flips
than the interrupted pass would have (its pipeline seed includes `skip`); use the default
DataLoader path (`ImageNetLoader`) where a resumed epoch must be bit-identical. PACKD's
mixed views (VIEWS) are built by the DataLoader path only: this loader refuses them.
"""
import math

import numpy as np
import torch

from dataset.batch import VIEWS
from dataset.imagenet import CROP, IMAGENET_MEAN, IMAGENET_STD, RATIO, RESIZE, SCALE, BaseImageNetLoader
from util.errors import UsageError

INSTALL_HINT = "pip install -r requirements-imagenet.txt, or --loader torch"
# nvJPEG scratch buffers sized once (the values of NVIDIA's DALI ResNet-50 example), so the
# largest ImageNet images do not make the decoder reallocate during the first epoch.
DEVICE_MEMORY_PADDING = 211025920
HOST_MEMORY_PADDING = 140544512


def import_dali():
    """nvidia.dali, or a one-line UsageError saying how to get it."""
    try:
        import nvidia.dali as dali
        from nvidia.dali import fn, types  # noqa: F401
    except Exception as e:  # not installed, or a wheel that does not load here
        raise UsageError(f"NVIDIA DALI cannot be imported ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else '-'}): "
                         f"{INSTALL_HINT}") from None
    return dali


def build_pipeline(files, labels, batch_size, train, seed, device_id=None, num_threads=4, crop=CROP, resize=RESIZE,
                   prefetch_queue_depth=2):
    """A built DALI pipeline reading `files` in the given order, `batch_size` a step (the last
    step padded by repeating the last file); outputs (images float32 (b, 3, crop, crop)
    normalised, labels int32 (b, 1)). `device_id=None`: CPU operators only."""
    dali = import_dali()
    from nvidia.dali import fn, types
    gpu = device_id is not None
    pipe = dali.Pipeline(batch_size=int(batch_size), num_threads=max(int(num_threads), 1), device_id=device_id,
                         seed=int(seed) % 2 ** 31, prefetch_queue_depth=prefetch_queue_depth)
    with pipe:
        jpegs, labels_out = fn.readers.file(files=list(files), labels=[int(v) for v in labels], random_shuffle=False,
                                            pad_last_batch=True, name="reader")
        decoder = {"device": "mixed", "device_memory_padding": DEVICE_MEMORY_PADDING,
                   "host_memory_padding": HOST_MEMORY_PADDING} if gpu else {"device": "cpu"}
        images = fn.decoders.image(jpegs, output_type=types.RGB, **decoder)
        if train:
            images = fn.random_resized_crop(images, size=[crop, crop], random_area=list(SCALE),
                                            random_aspect_ratio=list(RATIO), interp_type=types.INTERP_LINEAR,
                                            antialias=True)
            mirror = fn.random.coin_flip(probability=0.5)
        else:
            images = fn.resize(images, resize_shorter=resize, interp_type=types.INTERP_LINEAR, antialias=True)
            mirror = 0
        images = fn.crop_mirror_normalize(images, dtype=types.FLOAT, output_layout="CHW", crop=(crop, crop),
                                          mean=[255 * m for m in IMAGENET_MEAN], std=[255 * s for s in IMAGENET_STD],
                                          mirror=mirror)
        pipe.set_outputs(images, labels_out)
    pipe.build()
    return pipe


def to_torch(tensor_list, device):
    """A DALI TensorList (CPU or GPU, uniform shape) -> a torch tensor on `device`."""
    from nvidia.dali.tensors import TensorListGPU
    tensor = tensor_list.as_tensor()
    if isinstance(tensor_list, TensorListGPU):  # copied on the device, on torch's current stream
        from nvidia.dali.plugin.pytorch import feed_ndarray, to_torch_type
        out = torch.empty(tensor.shape(), dtype=to_torch_type[tensor.dtype], device=device)
        feed_ndarray(tensor, out, cuda_stream=torch.cuda.current_stream(device))
        return out
    return torch.from_numpy(np.array(tensor)).to(device, non_blocking=True)


class DALIImageNetLoader(BaseImageNetLoader):
    """The `ImageNetLoader` interface on DALI: see the module's docstring.

    items: (path, label) pairs (`dataset.imagenet.scan_imagenet`). `batch_size` is the global
    batch; under torchrun it must divide by the number of processes. `num_workers` is DALI's
    thread count. A CUDA `device` decodes on that GPU ("mixed"), a CPU device with DALI's CPU
    operators.
    """

    def __init__(self, items, batch_size, train=True, needs=(), negatives=None, seed=0, device="cpu",
                 num_workers=8, rank=0, world_size=1, crop=CROP, resize=RESIZE, prefetch_queue_depth=2):
        import_dali()
        needs = frozenset(needs)
        if VIEWS in needs:
            raise UsageError("--loader dali builds no PACKD views (same-class partners, PIL-style rotations, mixing); "
                             "use --loader torch, the default for methods that need views")
        super().__init__(items, batch_size, train, needs, negatives, seed, device, num_workers, rank, world_size,
                         crop, resize)
        self.prefetch_queue_depth = prefetch_queue_depth
        self.part_size = math.ceil(self.batch_size / self.world_size)  # every step's part but the last

    @staticmethod
    def _resolve_device(device):
        """DALI decodes on a numbered GPU: a bare "cuda" is the current one."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        return device

    def unsharded(self):
        return DALIImageNetLoader(self.files, self.batch_size, self.train, self.needs, self.negatives,
                                  seed=self.seed, device=self.device, num_workers=self.num_workers, crop=self.crop,
                                  resize=self.resize, prefetch_queue_depth=self.prefetch_queue_depth)

    def iterate(self, skip=0):
        """The epoch's batches from step `skip` on; the skipped ones are planned, never read."""
        parts, epoch_seed = self.planner.epoch()
        todo = list(enumerate(parts))[skip:]
        index = torch.cat([part[0] for _, part in todo]) if todo else torch.zeros(0, dtype=torch.long)
        pipe = None
        if index.numel():
            files = [self.files.path(i) for i in index.tolist()]
            device_id = self.device.index if self.device.type == "cuda" else None
            pipe = build_pipeline(files, self.files.labels[index.numpy()], self.part_size, self.train,
                                  seed=epoch_seed + 7919 * skip, device_id=device_id, num_threads=self.num_workers,
                                  crop=self.crop, resize=self.resize, prefetch_queue_depth=self.prefetch_queue_depth)
        try:
            for step, (index, _) in todo:
                if index.numel() == 0:  # evaluation under torchrun: no share of the last batch
                    images = torch.empty(0, 3, self.crop, self.crop, device=self.device)
                else:
                    images = to_torch(pipe.run()[0], self.device)[:index.numel()]
                yield self._make_batch(images, index, epoch_seed, step)
        finally:
            del pipe
