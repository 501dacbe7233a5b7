from .synthetic_voc import (NUM_CLASSES, VOC_CLASSES, check_label_size, check_voc_root,
                            voc_palette, write_synthetic_voc)
from .voc import CheckedPascalVOCDataset

__all__ = ['CheckedPascalVOCDataset', 'NUM_CLASSES', 'VOC_CLASSES', 'check_label_size',
           'check_voc_root', 'voc_palette', 'write_synthetic_voc']
from .toy_transforms import CIFARLarge, CIFARStretchV, CIFARTile  # noqa: E402

__all__ += ['CIFARLarge', 'CIFARStretchV', 'CIFARTile']
