"""VGG16 as DeepLab-LargeFOV's trunk (Chen et al. 2015), the backbone of the paper's Table 1.

``features`` keeps torchvision's module indices (features.0 ... features.28), so the conv
weights of torchvision's ImageNet VGG16 state_dict load as they are. DeepLab's changes are
parameter-free: 3x3 max pools with padding (ceil(H/2) at any size), the last two pools at
stride 1 with conv5 dilated by 2 (output stride 8), and pool5 followed by a 3x3 average pool.
fc6 becomes a 3x3 conv with dilation 12 and 1024 filters, fc7 a 1x1 conv with 1024: their
ImageNet weights are torchvision's classifier.0 / classifier.3 decimated as DeepLab does
(every 4th filter; fc6's 7x7 kernel sampled at rows and columns 0, 3, 6).
"""
from collections.abc import Mapping

from torch import Tensor, nn

# torchvision's configuration "D": channels of each conv, "M" a max pool.
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
FC_CHANNELS = 1024
FC_DROPOUT = 0.5
# DeepLab-LargeFOV's fc6 dilation at output stride 8; it halves with the stride doubled.
FC6_DILATION_AT_STRIDE_8 = 12
# Decimation of torchvision's fully connected layers into DeepLab's convolutions.
FILTER_STEP = 4  # 4096 -> 1024 filters
FC6_TAPS = slice(0, 7, 3)  # 7x7 -> 3x3: rows and columns 0, 3, 6
IMAGENET_CLASSIFIER_PREFIX = "classifier.6."


class VGG16LargeFOV(nn.Module):
    """(B, 3, H, W) -> (B, 1024, ceil(H/os), ceil(W/os)): conv1-conv5, fc6, fc7 (ReLU + dropout).

    output_stride 8 (DeepLab-LargeFOV: pool4 and pool5 at stride 1, conv5 dilated by 2,
    fc6 by 12) or 16 (pool4 keeps its stride, conv5 undilated, fc6 dilated by 6).
    """

    def __init__(self, output_stride: int = 8):
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError(f"VGG16 output_stride must be 8 or 16, got {output_stride}")
        self.output_stride = output_stride
        self.out_channels = FC_CHANNELS
        strided_pools = 3 if output_stride == 8 else 4
        layers: list[nn.Module] = []
        in_channels, pools, dilation = 3, 0, 1
        for item in VGG16_LAYOUT:
            if item == "M":
                pools += 1
                if pools <= strided_pools:
                    layers.append(nn.MaxPool2d(3, stride=2, padding=1))
                else:
                    layers.append(nn.MaxPool2d(3, stride=1, padding=1))
                    dilation *= 2
                continue
            # conv5 follows the last strided pool: it dilates by the stride given up so far.
            conv_dilation = dilation if pools == 4 else 1
            layers += [nn.Conv2d(in_channels, item, 3, padding=conv_dilation, dilation=conv_dilation),
                       nn.ReLU(inplace=True)]
            in_channels = item
        layers[-1] = nn.Sequential(layers[-1], nn.AvgPool2d(3, stride=1, padding=1))  # pool5 + pool5a
        self.features = nn.Sequential(*layers)
        fc6_dilation = FC6_DILATION_AT_STRIDE_8 * 8 // output_stride
        self.fc6 = nn.Conv2d(in_channels, FC_CHANNELS, 3, padding=fc6_dilation, dilation=fc6_dilation)
        self.fc7 = nn.Conv2d(FC_CHANNELS, FC_CHANNELS, 1)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(FC_DROPOUT)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        x = self.dropout(self.relu(self.fc6(self.features(images))))
        return self.dropout(self.relu(self.fc7(x)))

    @staticmethod
    def from_imagenet_state_dict(state: Mapping) -> dict:
        """torchvision's VGG16 state_dict -> this module's: features as they are, fc6/fc7
        decimated from classifier.0/classifier.3, the ImageNet classifier dropped. A state
        that already has fc6/fc7 (this module's own) passes through."""
        converted = {k: v for k, v in state.items() if not k.startswith(IMAGENET_CLASSIFIER_PREFIX)}
        if "classifier.0.weight" in converted:
            fc6 = converted.pop("classifier.0.weight")
            if fc6.dim() != 2 or fc6.shape[1] % 49:
                raise ValueError(f"classifier.0.weight has shape {tuple(fc6.shape)}, expected (4096, 25088)")
            fc6 = fc6.view(fc6.shape[0], -1, 7, 7)
            converted["fc6.weight"] = fc6[::FILTER_STEP, :, FC6_TAPS, FC6_TAPS].contiguous()
            converted["fc6.bias"] = converted.pop("classifier.0.bias")[::FILTER_STEP].contiguous()
        if "classifier.3.weight" in converted:
            fc7 = converted.pop("classifier.3.weight")
            converted["fc7.weight"] = fc7[::FILTER_STEP, ::FILTER_STEP, None, None].contiguous()
            converted["fc7.bias"] = converted.pop("classifier.3.bias")[::FILTER_STEP].contiguous()
        return converted
