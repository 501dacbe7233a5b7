from .dynopool_hrnet import DynOPoolHRNet

__all__ = ['DynOPoolHRNet']
from .cls_efficientnet import DynOPoolEfficientNet  # noqa: E402
from .cls_mobilenet_v2 import CIFARMobileNetV2, DynOPoolMobileNetV2  # noqa: E402
from .cls_resnet import DynOPoolResNet  # noqa: E402
from .cls_vgg import DynOPoolVGG  # noqa: E402

__all__ += ['CIFARMobileNetV2', 'DynOPoolEfficientNet', 'DynOPoolMobileNetV2',
            'DynOPoolResNet', 'DynOPoolVGG']
