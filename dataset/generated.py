"""What the generated stand-ins for the data sets share (small *learnable* sets for tests and
offline tries): a marker file beside the files, so that such a set can never pass for the real
one, and images whose class shows in their colour.
"""
import numpy as np


def mark_generated(path, layout, name):
    """Write the marker file `path` of a generated set in the `layout` ("CIFAR-100 format") of `name`."""
    with open(path, "w") as fh:
        fh.write(f"This is a generated data set in the {layout}, made for trying the code and for tests.\n"
                 f"It is NOT {name}: runs on it say so and are kept apart in summaries.\n")


# Well-separated colours (corners and edge midpoints of the RGB cube, inset) for generated classes.
PALETTE = np.array([[r, g, b] for r in (40, 140, 240) for g in (40, 140, 240) for b in (40, 140, 240)],
                   dtype=np.float64)


def class_colours(num_classes, seed=0):
    """`num_classes` distinct colours of `PALETTE` (at most 27), in a seeded order."""
    if num_classes > len(PALETTE):
        raise ValueError(f"at most {len(PALETTE)} generated classes, got {num_classes}")
    order = np.random.default_rng(seed).permutation(len(PALETTE))[:num_classes]
    return PALETTE[order]


def synthetic_images(labels, colours, size, rng, noise=20.0):
    """uint8 (N, 3, size, size): each image its class colour plus noise and a darker square at a
    random place. The colour fills every crop, so the classes stay separable after any
    RandomResizedCrop; the square keeps images from being flat."""
    n = len(labels)
    imgs = colours[labels][:, :, None, None] + rng.normal(0, noise, size=(n, 3, size, size))
    side = size // 4
    corners = rng.integers(0, size - side + 1, size=(n, 2))
    for k in range(n):  # data preparation, not a training step
        y, x = corners[k]
        imgs[k, :, y:y + side, x:x + side] *= 0.7
    return np.clip(np.rint(imgs), 0, 255).astype(np.uint8)
