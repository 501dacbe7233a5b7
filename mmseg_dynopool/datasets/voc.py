"""PascalVOC dataset with an up-front check of its data root."""
import os.path as osp
from typing import Any

from mmseg.datasets import PascalVOCDataset
from mmseg.registry import DATASETS

from .synthetic_voc import check_label_size, check_voc_root


@DATASETS.register_module()
class CheckedPascalVOCDataset(PascalVOCDataset):
    """mmseg's ``PascalVOCDataset`` that fails early, with a clear message, when its data
    root, image/mask folders, split file or listed files are missing, or when a label
    map's size differs from its image's.

    Sizes are compared for the first listed samples when the dataset is built, and for
    every sample when it is loaded (from the file headers: cheap next to decoding), so a
    wrong label names its file instead of surfacing as a cropping misalignment in
    training or as an ``IndexError`` in the IoU metric at test time.

    The dataset of the thesis' segmentation experiments (the DynOPool thesis,
    chapter 5, section 5.6). PascalVOC: Everingham et al., "The PASCAL Visual Object
    Classes (VOC) Challenge", IJCV 2010, http://host.robots.ox.ac.uk/pascal/VOC/.

    Args:
        ann_file (str): split file relative to ``data_root``. Default: ``''``.
        **kwargs: the other arguments of mmseg's ``PascalVOCDataset``
            (``data_root``, ``data_prefix``, ``pipeline``, ...); ``data_root`` and
            ``data_prefix['seg_map_path']`` are checked up front.

    Example:
        >>> import os.path as osp, tempfile
        >>> from mmseg_dynopool.datasets import write_synthetic_voc
        >>> root = tempfile.mkdtemp()
        >>> _ = write_synthetic_voc(root, num_train=2, num_val=1, size_range=(32, 48))
        >>> dataset = CheckedPascalVOCDataset(
        ...     data_root=root, ann_file='ImageSets/Segmentation/val.txt',
        ...     data_prefix=dict(img_path='JPEGImages',
        ...                      seg_map_path='SegmentationClass'),
        ...     pipeline=[])
        >>> len(dataset), osp.basename(dataset[0]['seg_map_path'])
        (1, 'synth_val_00000.png')
        >>> CheckedPascalVOCDataset(  # doctest: +ELLIPSIS
        ...     data_root=osp.join(root, 'missing'),
        ...     ann_file='ImageSets/Segmentation/val.txt')
        Traceback (most recent call last):
            ...
        FileNotFoundError: PascalVOC data root '...missing' does not exist. ...
    """

    def __init__(self, ann_file: str = '', **kwargs) -> None:
        root = kwargs.get('data_root') or ''
        prefix = kwargs.get('data_prefix') or {}
        seg_dir = prefix.get('seg_map_path', 'SegmentationClass')
        check_voc_root(root, [ann_file] if ann_file else [], seg_dir=seg_dir)
        super().__init__(ann_file=ann_file, **kwargs)

    def prepare_data(self, idx: int) -> Any:
        info = self.get_data_info(idx)
        img, seg = info.get('img_path'), info.get('seg_map_path')
        # Remote backends (backend_args) are left to mmseg's loaders.
        if img and seg and osp.isfile(img) and osp.isfile(seg):
            check_label_size(img, seg)
        return super().prepare_data(idx)
