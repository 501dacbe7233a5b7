from .dynopool_backbone import build_dynopool_backbone
from .dynopool_hrnet import DynOPoolHRNet

__all__ = ['DynOPoolHRNet', 'build_dynopool_backbone']

try:  # the classification backbones need mmpretrain (optional for segmentation)
    import mmpretrain.models  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    pass
else:
    from .cls_efficientnet import DynOPoolEfficientNet  # noqa: E402
    from .cls_mobilenet_v2 import CIFARMobileNetV2, DynOPoolMobileNetV2  # noqa: E402
    from .cls_resnet import DynOPoolResNet  # noqa: E402
    from .cls_vgg import DynOPoolVGG  # noqa: E402

    __all__ += ['CIFARMobileNetV2', 'DynOPoolEfficientNet', 'DynOPoolMobileNetV2',
                'DynOPoolResNet', 'DynOPoolVGG']
