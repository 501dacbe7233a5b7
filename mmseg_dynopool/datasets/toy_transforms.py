"""The toy datasets of thesis chapter 3 as mmpretrain transforms on CIFAR-100 images.

Paper: the DynOPool thesis, chapter 3, sections 3.1-3.2 and Fig. 3.1
(``shared/papers/dynopool_thesis.txt``; its CVPR 2022 version:
https://arxiv.org/abs/2205.15254). Configs: the ``*cifar100-{stretchv,tile,large}.py``
files of ``configs/dynopool_cls/`` (docs/classification.md, "Toy datasets").

* :class:`CIFARStretchV` - CIFAR-stretch-V (section 3.1, Fig. 3.1a): the image is
  stretched twice vertically and a 32x32 crop is taken at a random position, so the
  information is spread asymmetrically (denser horizontally).
* :class:`CIFARTile` - CIFAR-tile (section 3.2, Fig. 3.1b): the image is downsampled in
  half to 16x16 and tiled in a 4x4 grid (64x64): dense, small-scale information.
* :class:`CIFARLarge` - CIFAR-large (section 3.2, Fig. 3.1c): the same 16x16 image is
  upsampled to 64x64: sparse, large-scale information.

Use them in the pipeline of mmpretrain's ``CIFAR100`` dataset (images are loaded as
``HxWx3`` uint8 arrays, no ``LoadImageFromFile``), e.g.
``train_pipeline = [dict(type='CIFARTile'), dict(type='PackInputs')]``, with
``custom_imports=dict(imports=['mmseg_dynopool'])``. They work on any ``HxW(xC)`` image.

Randomness (only the crop of :class:`CIFARStretchV`) comes from ``np.random`` - seeded
by mmengine's ``randomness=dict(seed=...)`` and per dataloader worker - or, when a
``seed`` is given, from the transform's own ``np.random.RandomState(seed)``; either way
the output is a deterministic function of the seed.
"""
from typing import Optional, Tuple

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform
from mmcv.transforms.utils import cache_randomness
from mmpretrain.registry import TRANSFORMS

INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic', 'area', 'lanczos')


def _check_interpolation(name: str, value: str) -> str:
    if value not in INTERPOLATIONS:
        raise ValueError(f'{name} must be one of {INTERPOLATIONS}, got {value!r}')
    return value


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f'{name} must be a positive int, got {value!r}')
    return int(value)


def _image(results: dict) -> np.ndarray:
    img = results.get('img')
    if not isinstance(img, np.ndarray) or img.ndim not in (2, 3):
        raise TypeError("expected results['img'] to be an HxW or HxWxC numpy array, got "
                        f'{type(img).__name__}')
    return img


def _store(results: dict, img: np.ndarray) -> dict:
    results['img'] = np.ascontiguousarray(img)
    results['img_shape'] = img.shape[:2]
    return results


def _downsample(img: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    return mmcv.imresize(img, (size, size), interpolation=interpolation)


@TRANSFORMS.register_module()
class CIFARStretchV(BaseTransform):
    """Stretch the image vertically and crop it back to its size (CIFAR-stretch-V).

    The ``H x W`` image is resized to ``round(H * scale) x W`` and a
    ``crop_size x crop_size`` window is cut out of it: at a uniformly random position
    (``random_crop=True``, the thesis' dataset) or at the centre (``random_crop=False``,
    for deterministic evaluation). For 32x32 CIFAR images and the defaults the output
    is 32x32 and shows 16 consecutive source rows at full width.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``.

    Args:
        scale (float): vertical stretch factor. Default: 2.0.
        crop_size (int): side of the square crop. Default: 32.
        random_crop (bool): random (True) or centred (False) crop. Default: True.
        interpolation (str): interpolation of the stretch (see ``mmcv.imresize``).
            Default: ``'bilinear'``.
        seed (int, optional): seed of a private ``np.random.RandomState``; None draws
            from the global ``np.random``. Default: None.

    Example:
        >>> img = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
        >>> out = CIFARStretchV(random_crop=False)(dict(img=img))
        >>> out['img'].shape, out['img_shape']
        ((32, 32, 3), (32, 32))
        >>> # In a config: dict(type='CIFARStretchV') in mmpretrain's CIFAR100 pipeline.
    """

    def __init__(self,
                 scale: float = 2.0,
                 crop_size: int = 32,
                 random_crop: bool = True,
                 interpolation: str = 'bilinear',
                 seed: Optional[int] = None) -> None:
        if not isinstance(scale, (int, float)) or isinstance(scale, bool) or scale <= 0:
            raise ValueError(f'scale must be a positive number, got {scale!r}')
        self.scale = float(scale)
        self.crop_size = _check_positive_int('crop_size', crop_size)
        self.random_crop = bool(random_crop)
        self.interpolation = _check_interpolation('interpolation', interpolation)
        self.seed = seed
        self._rng = np.random.RandomState(seed) if seed is not None else None

    @cache_randomness
    def _offset(self, free_h: int, free_w: int) -> Tuple[int, int]:
        if not self.random_crop:
            return free_h // 2, free_w // 2
        rng = self._rng if self._rng is not None else np.random
        return int(rng.randint(0, free_h + 1)), int(rng.randint(0, free_w + 1))

    def transform(self, results: dict) -> dict:
        img = _image(results)
        h, w = img.shape[:2]
        stretched = mmcv.imresize(img, (w, max(1, int(round(h * self.scale)))),
                                  interpolation=self.interpolation)
        sh, sw = stretched.shape[:2]
        if sh < self.crop_size or sw < self.crop_size:
            raise ValueError(f'stretched image {sh}x{sw} is smaller than the crop '
                             f'{self.crop_size}x{self.crop_size}')
        top, left = self._offset(sh - self.crop_size, sw - self.crop_size)
        crop = stretched[top:top + self.crop_size, left:left + self.crop_size]
        return _store(results, crop)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, '
                f'crop_size={self.crop_size}, random_crop={self.random_crop}, '
                f'interpolation={self.interpolation!r}, seed={self.seed})')


@TRANSFORMS.register_module()
class CIFARTile(BaseTransform):
    """Downsample the image and tile it in a grid (CIFAR-tile).

    The image is resized to ``size x size`` (16x16: CIFAR "downsampled in half") and
    repeated ``grid x grid`` times (4x4), giving a ``size*grid`` square (64x64) in which
    every ``size x size`` tile is the same downsampled image.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``.

    Args:
        size (int): side of the downsampled image. Default: 16.
        grid (int): tiles per side. Default: 4.
        interpolation (str): interpolation of the downsampling (``'area'`` averages
            2x2 blocks for a 32 -> 16 reduction). Default: ``'area'``.

    Example:
        >>> img = np.random.RandomState(0).randint(0, 256, (32, 32, 3), dtype=np.uint8)
        >>> out = CIFARTile()(dict(img=img))['img']
        >>> out.shape, np.array_equal(out[:16, :16], out[48:, 16:32])  # equal tiles
        ((64, 64, 3), True)
    """

    def __init__(self, size: int = 16, grid: int = 4, interpolation: str = 'area') -> None:
        self.size = _check_positive_int('size', size)
        self.grid = _check_positive_int('grid', grid)
        self.interpolation = _check_interpolation('interpolation', interpolation)

    def transform(self, results: dict) -> dict:
        small = _downsample(_image(results), self.size, self.interpolation)
        reps = (self.grid, self.grid) + (1, ) * (small.ndim - 2)
        return _store(results, np.tile(small, reps))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, grid={self.grid}, '
                f'interpolation={self.interpolation!r})')


@TRANSFORMS.register_module()
class CIFARLarge(BaseTransform):
    """Downsample the image and enlarge it again (CIFAR-large).

    The image is resized to ``size x size`` (16x16) and then to
    ``out_size x out_size`` (64x64): the content of CIFAR-tile's single tile spread over
    the whole 64x64 canvas.

    Required keys: ``img``. Modified keys: ``img``, ``img_shape``.

    Args:
        size (int): side of the downsampled image. Default: 16.
        out_size (int): side of the output. Default: 64.
        down_interpolation (str): interpolation of the downsampling. Default: ``'area'``.
        up_interpolation (str): interpolation of the enlargement. Default:
            ``'bilinear'``.

    Example:
        >>> img = np.random.RandomState(0).randint(0, 256, (32, 32, 3), dtype=np.uint8)
        >>> CIFARLarge()(dict(img=img))['img'].shape
        (64, 64, 3)
    """

    def __init__(self,
                 size: int = 16,
                 out_size: int = 64,
                 down_interpolation: str = 'area',
                 up_interpolation: str = 'bilinear') -> None:
        self.size = _check_positive_int('size', size)
        self.out_size = _check_positive_int('out_size', out_size)
        self.down_interpolation = _check_interpolation('down_interpolation',
                                                       down_interpolation)
        self.up_interpolation = _check_interpolation('up_interpolation', up_interpolation)

    def transform(self, results: dict) -> dict:
        small = _downsample(_image(results), self.size, self.down_interpolation)
        large = mmcv.imresize(small, (self.out_size, self.out_size),
                              interpolation=self.up_interpolation)
        return _store(results, large)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(size={self.size}, out_size={self.out_size}, '
                f'down_interpolation={self.down_interpolation!r}, '
                f'up_interpolation={self.up_interpolation!r})')
