"""The linear probe's data sets (eval_rep.py): STL-10 and Tiny-ImageNet-200, each with the
normalisation the PACKD authors' eval_rep_base.py uses and its reader, generator and markers
(dataset/stl10.py, dataset/tiny_imagenet.py), chosen by name in one place."""
DATASETS = {
    "STL-10": {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)},
    "TinyImageNet200": {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
}


def data_reader(dataset):
    """-> (load(folder, download_if_missing), is_generated(folder), make_generated(folder), present(folder))."""
    if dataset == "STL-10":
        from dataset import stl10
        return stl10.load_stl10, stl10.is_generated, stl10.make_synthetic_stl10, stl10.has_stl10
    from dataset import tiny_imagenet
    return (tiny_imagenet.load_tiny_imagenet, tiny_imagenet.is_generated,
            tiny_imagenet.make_synthetic_tiny_imagenet, tiny_imagenet.has_tiny_imagenet)


def data_is_generated(opt):
    """Whether the probe reads a generated set (one already there, or one --generate_data is about
    to write): known before anything is read, so it is part of the probe's identity."""
    _, is_generated, _, present = data_reader(opt.dataset)
    return is_generated(opt.data_folder) or (opt.generate_data and not present(opt.data_folder))


def load_data(opt, log=print):
    """{"train": (uint8 images, labels), "test": ..., "classes": names}; a generated set is written
    first when --generate_data asks and the folder holds none."""
    load, _, make, present = data_reader(opt.dataset)
    if opt.generate_data and not present(opt.data_folder):
        make(opt.data_folder)
        log(f"wrote a generated {opt.dataset}-format data set to '{opt.data_folder}' (for trying the code, "
            f"not for results)")
    return load(opt.data_folder)
