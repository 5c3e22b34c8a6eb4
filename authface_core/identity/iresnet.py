"""ArcFace's improved ResNet (IResNet) backbone in torch, and loading its weights from ONNX.

The architecture of insightface's ``recognition/arcface_torch/backbones/iresnet.py`` (the
networks behind the ``w600k_r50.onnx`` of the buffalo_l pack, IResNet-50, and the
``glintr100.onnx`` of antelopev2, IResNet-100), written here from the paper's description
(Deng et al., "ArcFace", CVPR 2019, section 3.1 "improved residual unit": BN-Conv-BN-PReLU-
Conv-BN) and that file's layer names and sizes, so that a torch model can be run (and
differentiated) with the weights of a released ONNX file:

- stem: 3x3 conv (64) - BN - PReLU at 112x112;
- four stages of improved residual units, 64/128/256/512 channels, each halving the size
  (the first unit of a stage has a 1x1 conv + BN shortcut); r50 has (3, 4, 14, 3) units,
  r100 (3, 13, 30, 3);
- BN on the 512x7x7 map, flatten, fully connected to 512, BN1d: the embedding.

Batch norms use eps 1e-5, torch's default, as the reference does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

# Units per stage (arcface_torch's iresnet50 / iresnet100).
LAYERS: dict[str, tuple[int, int, int, int]] = {
    "r50": (3, 4, 14, 3),
    "r100": (3, 13, 30, 3),
}
INPUT_SIZE = 112
EMBEDDING_SIZE = 512
_WIDTHS = (64, 128, 256, 512)
_BN_EPS = 1e-5
# Spatial side of the last stage's map: 112 halved by the four stages.
_FINAL_SIDE = 7
_NORMS = (nn.BatchNorm2d, nn.BatchNorm1d)


class ImprovedResidualUnit(nn.Module):
    """BN - 3x3 conv - BN - PReLU - 3x3 conv (stride) - BN, plus the shortcut."""

    def __init__(self, inplanes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=_BN_EPS)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=_BN_EPS)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes, eps=_BN_EPS),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        # The shortcut runs after the residual branch, as in the reference's forward: the
        # ONNX export order that load_onnx_weights follows depends on it.
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """ArcFace backbone: (N, 3, 112, 112) normalised RGB -> (N, 512) embedding (not unit length).

    Inputs are RGB in [-1, 1] ((pixel - 127.5) / 127.5, insightface's ArcFaceONNX input_mean
    and input_std).
    """

    def __init__(self, layers: Sequence[int] = LAYERS["r50"]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, _WIDTHS[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(_WIDTHS[0], eps=_BN_EPS)
        self.prelu = nn.PReLU(_WIDTHS[0])
        inplanes = _WIDTHS[0]
        stages = []
        for planes, count in zip(_WIDTHS, layers, strict=True):
            units = [ImprovedResidualUnit(inplanes, planes, stride=2)]
            units += [ImprovedResidualUnit(planes, planes, stride=1) for _ in range(count - 1)]
            stages.append(nn.Sequential(*units))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn2 = nn.BatchNorm2d(_WIDTHS[-1], eps=_BN_EPS)
        self.fc = nn.Linear(_WIDTHS[-1] * _FINAL_SIDE * _FINAL_SIDE, EMBEDDING_SIZE)
        self.features = nn.BatchNorm1d(EMBEDDING_SIZE, eps=_BN_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        return self.features(self.fc(x))


def iresnet(arch: str = "r50") -> IResNet:
    """A fresh (randomly initialised) IResNet of ``arch`` ("r50" or "r100")."""
    if arch not in LAYERS:
        raise ValueError(f"unknown IResNet architecture {arch!r}; choose one of {', '.join(LAYERS)}")
    return IResNet(LAYERS[arch])


def _execution_order(model: nn.Module) -> list[nn.Module]:
    """Leaf modules holding parameters, in the order a forward pass runs them."""
    order: list[nn.Module] = []
    hooks = [
        module.register_forward_hook(lambda m, _i, _o: order.append(m))
        for module in model.modules()
        if not list(module.children()) and list(module.parameters(recurse=False))
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE))
    finally:
        for hook in hooks:
            hook.remove()
    return order


def load_onnx_weights(model: IResNet, path: str | Path) -> IResNet:
    """Fill ``model`` with the weights of an exported IResNet ONNX file (e.g. ``w600k_r50.onnx``).

    The ONNX graph's weighted operators (Conv, BatchNormalization, PRelu, Gemm or MatMul+Add)
    are matched, in graph order, with the model's weighted modules in forward order; both
    follow the forward pass, which is how torch.onnx writes a graph. Exporters in eval mode fold
    a batch norm that follows a conv or linear layer into that layer's weight and bias; such a
    fold is loaded as the folded weight plus a batch norm that only adds the bias (scale 1,
    mean 0, variance 1 - eps), which computes the same function. Returns ``model`` in eval mode.
    Raises ValueError naming the first operator that does not fit.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    # Weights may also come from Constant nodes, or pass through Identity nodes (torch.onnx
    # shares equal initialisers, such as PReLU slopes, that way).
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    weights[node.output[0]] = numpy_helper.to_array(attr.t)
        elif node.op_type == "Identity" and node.input[0] in weights:
            weights[node.output[0]] = weights[node.input[0]]
    ops = []
    for node in graph.node:
        inputs = [weights.get(name) for name in node.input]
        if node.op_type == "Gemm":
            attrs = {attr.name: attr.i for attr in node.attribute}
            if not attrs.get("transB", 0) and inputs[1] is not None:
                inputs[1] = inputs[1].T
            ops.append((node.op_type, node.name, inputs))
        elif node.op_type in ("Conv", "BatchNormalization", "PRelu"):
            ops.append((node.op_type, node.name, inputs))
        elif node.op_type == "MatMul" and inputs[1] is not None:
            ops.append(("MatMul", node.name, inputs))
        elif node.op_type == "Add" and ops and ops[-1][0] == "MatMul" and len(ops[-1][2]) == 2:
            bias = next((arr for arr in inputs if arr is not None), None)
            ops[-1] = ("MatMul", ops[-1][1], [*ops[-1][2], bias])

    modules = _execution_order(model)
    position = 0

    def fail(message: str) -> ValueError:
        return ValueError(f"{path}: not an IResNet of this architecture ({message})")

    def copy(target: torch.Tensor, value: np.ndarray | None, what: str) -> None:
        if value is None or tuple(value.shape) != tuple(target.shape):
            shape = None if value is None else tuple(value.shape)
            raise fail(f"{what}: expected shape {tuple(target.shape)}, found {shape}")
        target.copy_(torch.from_numpy(np.array(value, dtype=np.float32)))

    def folded_norm(index: int, index_op: int) -> nn.Module | None:
        """The batch norm at ``modules[index]`` when the graph folded it away, else None."""
        next_op = ops[index_op + 1][0] if index_op + 1 < len(ops) else None
        if index < len(modules) and isinstance(modules[index], _NORMS) and next_op != "BatchNormalization":
            return modules[index]
        return None

    def set_identity_norm(module: nn.Module, bias: np.ndarray | None, what: str) -> None:
        module.weight.fill_(1.0)
        module.running_mean.zero_()
        module.running_var.fill_(1.0 - module.eps)
        if bias is None:
            module.bias.zero_()
        else:
            copy(module.bias, bias, f"{what} bias")

    with torch.no_grad():
        for index_op, (op_type, name, inputs) in enumerate(ops):
            if position >= len(modules):
                raise fail(f"extra operator {op_type} {name!r}")
            module = modules[position]
            position += 1
            what = f"{op_type} {name!r}"
            if op_type == "Conv" and isinstance(module, nn.Conv2d):
                copy(module.weight, inputs[1], what)
                bias = inputs[2] if len(inputs) > 2 else None
                # IResNet's convs have no bias: a bias is a batch norm folded into the conv.
                if bias is not None:
                    if position >= len(modules) or not isinstance(modules[position], _NORMS):
                        raise fail(f"{what} has a bias but the model has no batch norm after it")
                    set_identity_norm(modules[position], bias, what)
                    position += 1
            elif op_type == "BatchNormalization" and isinstance(module, _NORMS):
                for target, value in zip(
                    (module.weight, module.bias, module.running_mean, module.running_var),
                    inputs[1:5],
                    strict=True,
                ):
                    copy(target, value, what)
            elif op_type == "PRelu" and isinstance(module, nn.PReLU):
                copy(module.weight, None if inputs[1] is None else inputs[1].reshape(-1), what)
            elif op_type in ("Gemm", "MatMul") and isinstance(module, nn.Linear):
                matrix = inputs[1]
                if op_type == "MatMul" and matrix is not None:
                    matrix = matrix.T
                copy(module.weight, matrix, what)
                copy(module.bias, inputs[2] if len(inputs) > 2 else None, what)
                norm = folded_norm(position, index_op)
                if norm is not None:
                    set_identity_norm(norm, None, what)
                    position += 1
            else:
                raise fail(f"{what} found where the model runs {type(module).__name__}")
    if position != len(modules):
        raise fail(f"the graph ends before the model's {type(modules[position]).__name__}")
    return model.eval()
