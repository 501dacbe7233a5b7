"""A small, learnable dataset in the exact PascalVOC 2012 segmentation layout.

Layout written under ``root`` (what mmseg's ``PascalVOCDataset`` reads)::

    root/JPEGImages/<id>.jpg
    root/SegmentationClass/<id>.png          palette PNG, class ids 0..20, 255 = void
    root/ImageSets/Segmentation/train.txt    one id per line
    root/ImageSets/Segmentation/val.txt

Each image has a textured background (class 0) and one to three objects. A class is
recognisable by its colour, its shape and its stripe texture, so a small network learns
it within minutes on a CPU. As in VOC, every object outline is a band of void (255)
pixels. Image sizes vary (odd and non-square included). Everything is determined by the
seed.

``style='blobs'`` draws a second, differently made set (the shape study of issue 23 uses
it as its second data set): every object is a random star-shaped blob, its outline a
disc perturbed by three random harmonics at random phases (isotropic on average, no
class has a shape of its own), and a class is recognisable by its colour and the period
of a checkerboard texture only.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

NUM_CLASSES = 21
VOC_CLASSES = ('background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus',
               'car', 'cat', 'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike',
               'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
SHAPES = ('disc', 'square', 'triangle', 'ring', 'cross', 'diamond', 'hbar')
STYLES = ('shapes', 'blobs')


def voc_palette() -> List[int]:
    """The 256-entry PascalVOC colour map as a flat [r, g, b, ...] list.

    Example:
        >>> palette = voc_palette()
        >>> len(palette), palette[3:6]      # class 1 (aeroplane) is dark red
        (768, [128, 0, 0])
    """
    palette = []
    for label in range(256):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def _class_style(label: int) -> Tuple[np.ndarray, str, int]:
    """Fixed colour, shape and stripe period of a foreground class (1..20)."""
    hue = (label * 0.61803) % 1.0
    # HSV -> RGB with full saturation, bright value.
    i = int(hue * 6) % 6
    f = hue * 6 - int(hue * 6)
    v, p, q, t = 230, 40, int(230 * (1 - f * 0.83)), int(40 + 190 * f)
    rgb = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    shape = SHAPES[label % len(SHAPES)]
    period = 3 + (label * 7) % 6
    return np.array(rgb, dtype=np.float32), shape, period


def _shape_mask(shape: str, h: int, w: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    if shape == 'disc':
        return dy ** 2 + dx ** 2 <= r ** 2
    if shape == 'square':
        return (np.abs(dy) <= r * 0.85) & (np.abs(dx) <= r * 0.85)
    if shape == 'triangle':
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if shape == 'ring':
        d2 = dy ** 2 + dx ** 2
        return (d2 <= r ** 2) & (d2 >= (0.5 * r) ** 2)
    if shape == 'cross':
        return ((np.abs(dy) <= r * 0.3) & (np.abs(dx) <= r)) | (
            (np.abs(dx) <= r * 0.3) & (np.abs(dy) <= r))
    if shape == 'diamond':
        return np.abs(dy) + np.abs(dx) <= r
    return (np.abs(dy) <= r * 0.4) & (np.abs(dx) <= r * 1.2)  # hbar


def _blob_mask(rng: np.random.RandomState, h: int, w: int, cy: float, cx: float,
               r: float) -> np.ndarray:
    """A disc of radius ``r`` whose radius varies with the angle by three harmonics
    (orders 2-4, amplitudes up to 0.15 r, random phases): no preferred axis on average."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    theta = np.arctan2(dy, dx)
    radius = np.full_like(theta, r)
    for order in (2, 3, 4):
        amp, phase = rng.uniform(0, 0.15), rng.uniform(0, 2 * np.pi)
        radius += r * amp * np.cos(order * theta + phase)
    return dy ** 2 + dx ** 2 <= radius ** 2


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a square of side 2*radius+1 (no wrap-around at the borders)."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def make_sample(rng: np.random.RandomState, size: Tuple[int, int],
                style: str = 'shapes') -> Tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, label uint8 HxW) pair.

    Args:
        rng (np.random.RandomState): the generator every random choice comes from.
        size (tuple[int, int]): ``(H, W)`` of the sample.
        style (str): ``'shapes'`` (a shape and stripes per class) or ``'blobs'``
            (random blobs, a checkerboard period per class; module doc).

    Returns:
        tuple[np.ndarray, np.ndarray]: the image and its label map (class ids 0-20,
        255 on the object outlines).
    """
    if style not in STYLES:
        raise ValueError(f'style must be one of {STYLES}, got {style!r}')
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(60, 140, size=3).astype(np.float32)
    image = base + 12 * np.sin(xx[..., None] * rng.uniform(0.05, 0.2)
                               + yy[..., None] * rng.uniform(0.05, 0.2))
    label = np.zeros((h, w), dtype=np.uint8)
    void = np.zeros((h, w), dtype=bool)
    for _ in range(rng.randint(1, 4)):
        cls = rng.randint(1, NUM_CLASSES)
        colour, shape, period = _class_style(cls)
        r = rng.uniform(0.18, 0.32) * min(h, w)
        cy, cx = rng.uniform(r, h - r), rng.uniform(r, w - r)
        if style == 'blobs':
            mask = _blob_mask(rng, h, w, cy, cx, r)
            texture = ((xx // period + yy // period) % 2)[..., None] * 35.0
        else:
            mask = _shape_mask(shape, h, w, cy, cx, r)
            texture = ((xx + yy) // period % 2)[..., None] * 35.0
        if not mask.any():
            continue
        image = np.where(mask[..., None], colour - texture, image)
        edge = _dilate(mask, 1) & ~_erode(mask)
        label[mask] = cls
        void |= edge
    image = image + rng.normal(0, 6, size=image.shape)
    label[void] = 255
    return np.clip(image, 0, 255).astype(np.uint8), label


def _erode(mask: np.ndarray) -> np.ndarray:
    return ~_dilate(~mask, 1)  # pixels outside the image count as background


def write_synthetic_voc(root: str, num_train: int = 40, num_val: int = 10,
                        size_range: Tuple[int, int] = (72, 112), seed: int = 0,
                        overwrite: bool = False, with_aug: bool = False,
                        style: str = 'shapes') -> Dict[str, List[str]]:
    """Write the dataset under ``root`` and return ``{'train': ids, 'val': ids}``.

    ``with_aug`` also writes the SBD-augmentation layout mmseg's ``voc12aug`` configs
    read (``SegmentationClassAug/`` grey-level PNGs and ``ImageSets/Segmentation/aug.txt``
    listing the training ids), so the paper configs run on this data unchanged.

    Refuses to write into a directory that already holds VOC data unless ``overwrite``
    (a real dataset must never be clobbered by accident).

    Args:
        root (str): the ``VOC2012``-like folder to write.
        num_train (int): training images (at least 1). Default: 40.
        num_val (int): validation images (at least 1). Default: 10.
        size_range (tuple[int, int]): smallest and largest image side, each drawn
            independently per image (``16 <= min <= max``). Default: (72, 112).
        seed (int): seed of everything drawn. Default: 0.
        overwrite (bool): write over an existing ``JPEGImages/``. Default: False.
        with_aug (bool): also write the ``voc12aug`` layout. Default: False.
        style (str): ``'shapes'`` or ``'blobs'`` (module doc). Default: ``'shapes'``.

    Example:
        >>> import tempfile
        >>> root = tempfile.mkdtemp()
        >>> splits = write_synthetic_voc(root, num_train=2, num_val=1,
        ...                              size_range=(32, 48))
        >>> splits['val']
        ['synth_val_00000']
        >>> check_voc_root(root)          # a usable VOC layout: no error
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f'need at least one train and one val image, got '
                         f'num_train={num_train}, num_val={num_val}')
    if style not in STYLES:
        raise ValueError(f'style must be one of {STYLES}, got {style!r}')
    lo, hi = size_range
    if not 16 <= lo <= hi:
        raise ValueError(f'size_range must satisfy 16 <= min <= max, got {size_range}')
    if osp.isdir(osp.join(root, 'JPEGImages')) and os.listdir(
            osp.join(root, 'JPEGImages')) and not overwrite:
        raise FileExistsError(f'{root} already holds JPEGImages/; refusing to overwrite '
                              '(pass overwrite=True / --overwrite to replace it)')
    subs = ['JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation']
    if with_aug:
        subs.append('SegmentationClassAug')
    for sub in subs:
        os.makedirs(osp.join(root, sub), exist_ok=True)
    rng = np.random.RandomState(seed)
    palette = voc_palette()
    splits = {'train': [], 'val': []}
    for split, count in (('train', num_train), ('val', num_val)):
        for k in range(count):
            sample_id = f'synth_{split}_{k:05d}'
            size = (int(rng.randint(lo, hi + 1)), int(rng.randint(lo, hi + 1)))
            image, label = make_sample(rng, size, style)
            label_path = osp.join(root, 'SegmentationClass', sample_id + '.png')
            if image.shape[:2] != label.shape[:2]:
                # A label of another size trains on misaligned pixels or breaks the
                # evaluation later, far from its cause: refuse to write it.
                raise ValueError(
                    f'synthetic VOC: label {label_path} would be '
                    f'{label.shape[0]}x{label.shape[1]} but its image is '
                    f'{image.shape[0]}x{image.shape[1]} (H x W)')
            Image.fromarray(image).save(
                osp.join(root, 'JPEGImages', sample_id + '.jpg'), quality=95)
            png = Image.fromarray(label, mode='P')
            png.putpalette(palette)
            png.save(label_path)
            if with_aug and split == 'train':
                Image.fromarray(label, mode='L').save(
                    osp.join(root, 'SegmentationClassAug', sample_id + '.png'))
            splits[split].append(sample_id)
        with open(osp.join(root, 'ImageSets', 'Segmentation', f'{split}.txt'), 'w') as f:
            f.write('\n'.join(splits[split]) + '\n')
    if with_aug:
        with open(osp.join(root, 'ImageSets', 'Segmentation', 'aug.txt'), 'w') as f:
            f.write('\n'.join(splits['train']) + '\n')
    return splits


def check_voc_root(root: str, ann_files: Sequence[str] = (
        'ImageSets/Segmentation/train.txt', 'ImageSets/Segmentation/val.txt'),
                   seg_dir: str = 'SegmentationClass',
                   max_checked: Optional[int] = 20) -> None:
    """Raise a clear error if ``root`` is not a usable VOC-layout dataset.

    Args:
        root (str): the ``VOC2012``-like folder.
        ann_files (Sequence[str]): split files, relative to ``root``, that must exist
            and list at least one id. Default: the ``train`` and ``val`` splits.
        seg_dir (str): folder of the label maps. Default: ``'SegmentationClass'``.
        max_checked (int, optional): how many ids of each split are checked for their
            image, their label map and equal sizes; None checks all. Default: 20.

    Raises:
        FileNotFoundError: a missing folder, split file or listed file.
        ValueError: an empty split file, or a label map of another size than its
            image.
    """
    if not osp.isdir(root):
        raise FileNotFoundError(
            f'PascalVOC data root {root!r} does not exist. Create it with '
            f'`python tools/data/make_synthetic_voc.py {root}` or point data_root at '
            'VOCdevkit/VOC2012')
    for sub in ('JPEGImages', seg_dir):
        if not osp.isdir(osp.join(root, sub)):
            raise FileNotFoundError(f'PascalVOC data root {root!r} has no {sub}/ folder')
    for ann in ann_files:
        path = osp.join(root, ann)
        if not osp.isfile(path):
            raise FileNotFoundError(f'PascalVOC split file {path!r} is missing')
        with open(path) as f:
            ids = [line.strip() for line in f if line.strip()]
        if not ids:
            raise ValueError(f'PascalVOC split file {path!r} lists no image')
        for sample_id in ids[:max_checked]:
            for sub, ext in (('JPEGImages', '.jpg'), (seg_dir, '.png')):
                p = osp.join(root, sub, sample_id + ext)
                if not osp.isfile(p):
                    raise FileNotFoundError(f'{path} lists {sample_id!r} but {p} is '
                                            'missing')
            check_label_size(osp.join(root, 'JPEGImages', sample_id + '.jpg'),
                             osp.join(root, seg_dir, sample_id + '.png'))


# EXIF orientations that swap width and height; cv2 (mmcv's default decoder for images)
# applies them, so the image mmseg sees is transposed.
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def image_size(path: str) -> Tuple[int, int]:
    """``(H, W)`` of an image file as mmseg's loaders decode it, from its header."""
    with Image.open(path) as img:
        w, h = img.size
        if path.lower().endswith(('.jpg', '.jpeg')) and \
                img.getexif().get(0x0112) in _TRANSPOSING_ORIENTATIONS:
            w, h = h, w
    return h, w


def check_label_size(img_path: str, seg_path: str) -> None:
    """Raise ``ValueError`` naming ``seg_path`` if the label map and its image differ
    in size (mmseg would crop misaligned pixels in training and fail in the IoU metric
    with an IndexError that names no file)."""
    img_hw, seg_hw = image_size(img_path), image_size(seg_path)
    if img_hw != seg_hw:
        raise ValueError(
            f'label {seg_path} is {seg_hw[0]}x{seg_hw[1]} (H x W) but its image '
            f'{img_path} is {img_hw[0]}x{img_hw[1]}; every label map must have the size '
            'of its image')
