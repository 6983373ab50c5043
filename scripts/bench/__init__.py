"""The speed harness behind `scripts/benchmark.py`, one responsibility per module.

    options    the flags, and train_student.py's options for them (every default the real one)
    data       synthetic CIFAR-100-shaped data, and a loader cut to an epoch's first batches
    cifar      the default rows' data source: that synthetic set through dataset.make_loaders
    imagenet   --dataset imagenet's data source: a JPEG folder or a generated set, its options
    imagenet_data_path  the ImageNet data path alone: DataLoader workers vs DALI
    timing     clocks: CUDA events / perf_counter, CPU-seconds, peak memory, host syncs, barrier
    data_path  the loaders alone (device augmentation vs DataLoader workers)
    steps      real training steps, the forward-only epoch, evaluation, the pre-training
               stage, and the projection of a whole run from them
    parts      a method's parts alone, found without its name: negative sampling, the
               module that consumes the contrast indices, library kernels it calls
    levers     teacher-forward and SGD variants, each alone
    report     the human-readable lines and the notes
    run        the order of the measurements, and the JSON report

Nothing here names a method: what to time comes from the method class (`needs`,
`forward_only_first_epoch`, an overridden `pretrain`) and from what the distiller does in
one real step, so a new file in `distiller_zoo/` is benchmarkable without an edit here.
"""
