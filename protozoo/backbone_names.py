"""The timm backbones every model family is registered on, and their default input configs.

The first eleven are the architectures the dermatology explainability benchmark compared; where
Keras names differ, the closest timm model stands in: MobileNet -> ``mobilenetv1_100``, ResNet50V2
-> ``resnetv2_50`` (pre-activation), Xception -> ``legacy_xception`` (the Keras original),
NASNetMobile -> ``nasnetalarge`` (timm has only the large NASNet-A; same cell search space).
"""

from __future__ import annotations

from protozoo.pretrained import INCEPTION_MEAN, INCEPTION_STD, PretrainedCfg

__all__ = ["BACKBONES"]

_IMAGENET = PretrainedCfg()
_INCEPTION = PretrainedCfg(input_size=(3, 299, 299), mean=INCEPTION_MEAN, std=INCEPTION_STD)
_NASNET = PretrainedCfg(input_size=(3, 331, 331), mean=INCEPTION_MEAN, std=INCEPTION_STD)

# Registered name suffix -> (timm backbone, default pretrained cfg).
BACKBONES: dict[str, tuple[str, PretrainedCfg]] = {
    "densenet121": ("densenet121", _IMAGENET),
    "efficientnet_b0": ("efficientnet_b0", _IMAGENET),
    "inception_v3": ("inception_v3", _INCEPTION),
    "inception_resnet_v2": ("inception_resnet_v2", _INCEPTION),
    "mobilenet": ("mobilenetv1_100", _IMAGENET),
    "mobilenetv2": ("mobilenetv2_100", _IMAGENET),
    "nasnet": ("nasnetalarge", _NASNET),
    "resnet50": ("resnet50", _IMAGENET),
    "resnet50v2": ("resnetv2_50", _IMAGENET),
    "vgg16": ("vgg16", _IMAGENET),
    "xception": ("legacy_xception", _INCEPTION),
    "resnet18": ("resnet18", _IMAGENET),
    "resnet34": ("resnet34", _IMAGENET),
    "vgg19": ("vgg19", _IMAGENET),
    "efficientnet_lite0": ("tf_efficientnet_lite0", _IMAGENET),
    "convnext_tiny": ("convnext_tiny", _IMAGENET),
    "vit_tiny": ("vit_tiny_patch16_224", PretrainedCfg(mean=INCEPTION_MEAN, std=INCEPTION_STD)),
}
