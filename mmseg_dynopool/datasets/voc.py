"""PascalVOC dataset with an up-front check of its data root."""
from mmseg.datasets import PascalVOCDataset
from mmseg.registry import DATASETS

from .synthetic_voc import check_voc_root


@DATASETS.register_module()
class CheckedPascalVOCDataset(PascalVOCDataset):
    """mmseg's ``PascalVOCDataset`` that fails early, with a clear message, when its data
    root, image/mask folders, split file or listed files are missing."""

    def __init__(self, ann_file: str = '', **kwargs) -> None:
        root = kwargs.get('data_root') or ''
        prefix = kwargs.get('data_prefix') or {}
        seg_dir = prefix.get('seg_map_path', 'SegmentationClass')
        check_voc_root(root, [ann_file] if ann_file else [], seg_dir=seg_dir)
        super().__init__(ann_file=ann_file, **kwargs)
