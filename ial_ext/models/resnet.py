"""Dilated ResNet-18/34/50/101 with torchvision's module and parameter names.

The names (conv1, bn1, layer1.0.conv1, ..., layerN.0.downsample.0/1) match
torchvision's ResNet so its ImageNet state_dict loads as it is (fc excluded:
this is a feature extractor). Strides of layer3/layer4 are replaced by dilation
to reach output stride 8 (layer3 dilation 2, layer4 dilation 4) or 16 (layer4
dilation 2), which changes no parameter shape. Unlike torchvision, BasicBlock
supports dilation too (ResNet-18/34 at output stride 8).
"""
from torch import Tensor, nn

# name -> (block kind, blocks per stage)
RESNET_LAYOUTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}


def _conv3x3(in_channels: int, out_channels: int, stride: int, dilation: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation,
                     dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int, first_dilation: int,
                 downsample: nn.Module | None):
        super().__init__()
        self.conv1 = _conv3x3(in_channels, planes, stride, first_dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """torchvision's "ResNet V1.5": the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int, dilation: int, first_dilation: int,
                 downsample: nn.Module | None):
        super().__init__()
        del dilation  # a bottleneck has a single 3x3 conv, which takes first_dilation
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride, first_dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet feature extractor: (B, 3, H, W) -> (B, out_channels, ceil(H/os), ceil(W/os)).

    Args:
        name: "resnet18", "resnet34", "resnet50" or "resnet101".
        output_stride: 8 or 16.
        freeze_batchnorm: keep every BatchNorm in eval mode (running statistics)
            with frozen affine parameters, also under ``.train()``. The usual
            choice when fine-tuning ImageNet weights with batches of 4-8 images,
            whose batch statistics are too noisy to replace ImageNet's.
    """

    def __init__(self, name: str, output_stride: int = 8, freeze_batchnorm: bool = False):
        super().__init__()
        if name not in RESNET_LAYOUTS:
            raise ValueError(f"unknown ResNet {name!r}; expected one of {sorted(RESNET_LAYOUTS)}")
        if output_stride not in (8, 16):
            raise ValueError(f"ResNet output_stride must be 8 or 16, got {output_stride}")
        kind, blocks = RESNET_LAYOUTS[name]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.output_stride = output_stride
        self.freeze_batchnorm = freeze_batchnorm

        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self._in_channels = 64
        self._dilation = 1
        # Stages past the output stride trade their stride for dilation.
        dilate_layer3 = output_stride == 8
        self.layer1 = self._make_layer(block, 64, blocks[0], stride=1, dilate=False)
        self.layer2 = self._make_layer(block, 128, blocks[1], stride=2, dilate=False)
        self.layer3 = self._make_layer(block, 256, blocks[2], stride=2, dilate=dilate_layer3)
        self.layer4 = self._make_layer(block, 512, blocks[3], stride=2, dilate=True)
        self.out_channels = 512 * block.expansion
        del self._in_channels, self._dilation
        self._initialize()
        if freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.requires_grad_(False)
            self.train(self.training)

    def _make_layer(self, block, planes: int, num_blocks: int, stride: int, dilate: bool) -> nn.Sequential:
        # As torchvision: the first block keeps the previous dilation, the rest use the new one.
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or self._in_channels != out_channels:
            downsample = nn.Sequential(
                nn.Conv2d(self._in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        layers = [block(self._in_channels, planes, stride, self._dilation, previous_dilation, downsample)]
        self._in_channels = out_channels
        layers += [block(out_channels, planes, 1, self._dilation, self._dilation, None)
                   for _ in range(num_blocks - 1)]
        return nn.Sequential(*layers)

    def _initialize(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def train(self, mode: bool = True) -> "ResNet":
        super().train(mode)
        if self.freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))
