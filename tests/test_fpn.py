import itertools

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from course.data import shape_mask, shift_masks
from course.fpn import (
    FPN,
    Backbone,
    BackboneConfig,
    DilatedBlock,
    FPNConfig,
    ReceptiveField,
    conv_output_size,
    dilation_coverage,
    dilation_coverage_loop,
    found_objects,
    gradient_footprint,
    layer_specs,
    measured_receptive_field,
    receptive_field,
)


def linear_stack(specs, seed=0):
    """Convs (positive random weights, no ReLU) and average pools: the footprint is exact."""
    g = torch.Generator().manual_seed(seed)
    layers = []
    for kernel, stride, dilation, pool in specs:
        if pool:
            layers.append(nn.AvgPool2d(kernel, stride))
        else:
            conv = nn.Conv2d(1, 1, kernel, stride, dilation=dilation, bias=False).double()
            with torch.no_grad():
                conv.weight.copy_(0.5 + torch.rand(conv.weight.shape, generator=g))
            layers.append(conv)
    return nn.Sequential(*layers).double()


STACKS = {
    "one 3x3": [(3, 1, 1, False)],
    "vgg-like": [(3, 1, 1, False), (3, 1, 1, False), (2, 2, 1, True), (3, 1, 1, False),
                 (3, 1, 1, False), (2, 2, 1, True), (3, 1, 1, False)],
    "resnet stem": [(7, 2, 1, False), (3, 2, 1, True), (3, 1, 1, False)],
    "dilated 1-2-5": [(3, 1, 1, False), (3, 1, 2, False), (3, 1, 5, False)],
    "strided and dilated": [(3, 2, 1, False), (3, 1, 2, False), (3, 2, 1, False),
                            (5, 1, 3, False)],
}


# --- receptive field ----------------------------------------------------------------------


@pytest.mark.parametrize("name", STACKS)
def test_receptive_field_equals_the_measured_one(name):
    net = linear_stack(STACKS[name])
    rf = receptive_field(net)
    assert rf == receptive_field([(k, s, d) for k, s, d, _ in STACKS[name]])
    assert measured_receptive_field(net, size=rf.size + 40) == rf.size


@pytest.mark.parametrize("name", STACKS)
def test_receptive_field_stride_is_the_distance_between_footprints(name):
    net = linear_stack(STACKS[name])
    rf = receptive_field(net)
    size = rf.size + 6 * rf.stride
    x = torch.zeros(1, 1, size, size, dtype=torch.float64)
    h = net(x).shape[2]
    a = gradient_footprint(net, size, position=(h // 2, h // 2)) > 0
    b = gradient_footprint(net, size, position=(h // 2, h // 2 + 1)) > 0
    cols_a, cols_b = a.any(0).nonzero(), b.any(0).nonzero()
    assert int(cols_b.min() - cols_a.min()) == rf.stride


def test_receptive_field_input_forms():
    assert receptive_field([]) == ReceptiveField(1, 1)
    assert receptive_field([(3, 2)]) == (3, 2)  # dilation defaults to 1
    assert receptive_field(np.array([[7, 2, 1], [3, 2, 1]])) == (11, 4)
    assert receptive_field(torch.tensor([[3, 1, 2]])) == (5, 1)
    conv = nn.Conv2d(1, 1, 3, dilation=2)
    assert receptive_field(conv) == (5, 1)
    seq = nn.Sequential(conv, nn.ReLU(), nn.BatchNorm2d(1), nn.MaxPool2d(2))
    assert layer_specs(seq) == [(3, 1, 2), (2, 2, 1)]


def test_receptive_field_refuses_residual_blocks_and_bad_rows():
    block = torchvision.models.resnet.BasicBlock(4, 4)
    with pytest.raises(TypeError, match="longest path"):
        receptive_field(nn.Sequential(block))
    with pytest.raises(ValueError, match=r"layers\[0\] must be \(kernel, stride"):
        receptive_field([(3,)])
    with pytest.raises(ValueError, match="must be >= 1"):
        receptive_field([(3, 0, 1)])
    with pytest.raises(ValueError, match="only square"):
        receptive_field(nn.Conv2d(1, 1, (3, 5)))


@pytest.mark.parametrize("size, kernel, stride, padding, dilation", list(itertools.product(
    [1, 7, 16, 33], [1, 3, 5], [1, 2, 3], [0, 1, 4], [1, 2, 3])))
def test_conv_output_size_equals_torch(size, kernel, stride, padding, dilation):
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        with pytest.raises(ValueError, match="kernel spans"):
            conv_output_size(size, kernel, stride, padding, dilation)
        return
    conv = nn.Conv2d(1, 1, kernel, stride, padding, dilation)
    want = conv(torch.zeros(1, 1, size, size)).shape[-1]
    assert conv_output_size(size, kernel, stride, padding, dilation) == want


def test_conv_output_size_bad_arguments():
    with pytest.raises(ValueError, match="need size >= 0"):
        conv_output_size(10, 3, stride=0)


# --- dilation -----------------------------------------------------------------------------


@pytest.mark.parametrize("rates", [(1,), (2,), (2, 2, 2), (1, 2, 5), (1, 2, 3), (3, 1, 4)])
def test_dilation_coverage_counts_paths(rates):
    counts = dilation_coverage(rates)
    assert torch.equal(counts, dilation_coverage_loop(rates))
    size = 1 + 2 * sum(rates)
    assert counts.shape == (size, size) and int(counts.sum()) == 9 ** len(rates)
    net = linear_stack([(3, 1, r, False) for r in rates])
    for conv in net:
        nn.init.ones_(conv.weight)
    footprint = gradient_footprint(net, size)
    torch.testing.assert_close(footprint, counts.double(), rtol=0, atol=1e-9)


def test_equal_rates_grid_and_mixed_rates_do_not():
    grid = dilation_coverage((2, 2, 2))
    assert int((grid == 0).sum()) > 0
    assert bool((grid[1::2] == 0).all()) and bool((grid[:, 1::2] == 0).all())  # odd offsets
    assert bool((dilation_coverage((1, 2, 5)) > 0).all())


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_dilated_block_keeps_the_size_and_grows_the_field(norm):
    torch.manual_seed(0)
    block = DilatedBlock(4, rates=(1, 2, 5), norm=norm).eval()
    x = torch.randn(2, 4, 13, 11)
    assert block(x).shape == x.shape
    inner = block.body  # the residual path's field; the block adds the identity
    assert receptive_field(inner) == (17, 1)
    measured = measured_receptive_field(block, 41, in_channels=4)
    # group norm averages over the whole map, so with it every input pixel matters
    assert measured == (17 if norm == "batch" else 41)


# --- backbone -----------------------------------------------------------------------------


def test_default_backbone_is_resnet18():
    ours = Backbone()
    reference = torchvision.models.resnet18(weights=None)
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    ours.load_state_dict(state, strict=True)
    ours.eval()
    reference.eval()
    x = torch.randn(2, 3, 70, 90, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = ours(x)
        y = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        for level in (2, 3, 4, 5):
            y = getattr(reference, f"layer{level - 1}")(y)
            torch.testing.assert_close(features[f"C{level}"], y, rtol=0, atol=0)
    assert list(features) == ["C2", "C3", "C4", "C5"]
    assert ours.strides == {"C2": 4, "C3": 8, "C4": 16, "C5": 32}
    assert ours.channels == {"C2": 64, "C3": 128, "C4": 256, "C5": 512}


@pytest.mark.parametrize("output_stride, strides", [
    (None, (4, 8, 16, 32)), (32, (4, 8, 16, 32)), (16, (4, 8, 16, 16)), (8, (4, 8, 8, 8)),
    (4, (4, 4, 4, 4))])
def test_backbone_shapes_and_output_stride(output_stride, strides):
    net = Backbone(BackboneConfig(width=4, output_stride=output_stride)).eval()
    features = net(torch.zeros(1, 3, 64, 96))
    for level, stride in zip((2, 3, 4, 5), strides):
        assert net.strides[f"C{level}"] == stride
        assert features[f"C{level}"].shape == (1, 4 * 2 ** (level - 2), 64 // stride, 96 // stride)


def test_backbone_rounds_up_odd_sizes_and_stops_at_last_level():
    net = Backbone(BackboneConfig(width=4, last_level=3, in_channels=1))
    features = net(torch.zeros(2, 1, 33, 50))
    assert list(features) == ["C2", "C3"]
    assert features["C2"].shape == (2, 4, 9, 13) and features["C3"].shape == (2, 8, 5, 7)
    with pytest.raises(ValueError, match=r"images must be \[B, 1, H, W\]"):
        net(torch.zeros(2, 3, 33, 50))


def test_dilation_keeps_the_receptive_field_and_halves_the_stride():
    plain = Backbone(BackboneConfig(width=4, last_level=4))
    dilated = Backbone(BackboneConfig(width=4, last_level=4, output_stride=8))
    rf_plain, rf_dilated = receptive_field(plain.main_path()), receptive_field(dilated.main_path())
    assert rf_plain.size == rf_dilated.size
    assert (rf_plain.stride, rf_dilated.stride) == (16, 8)
    assert sum(p.numel() for p in plain.parameters()) == sum(
        p.numel() for p in dilated.parameters())


@pytest.mark.parametrize("seed", range(3))
def test_backbone_main_path_equals_the_measured_field(seed):
    torch.manual_seed(seed)
    net = Backbone(BackboneConfig(width=4, last_level=3)).eval()
    rf = receptive_field(net.main_path())
    assert rf == (99, 8)
    assert measured_receptive_field(net, 160, in_channels=3) == rf.size
    assert receptive_field(net.main_path(2)) == (43, 4)
    with pytest.raises(ValueError, match="level must be in 2..3"):
        net.main_path(4)


@pytest.mark.parametrize("kwargs, words", [
    ({"width": 0}, "width and in_channels"), ({"blocks": (2, 2, 2)}, "blocks must give 4"),
    ({"last_level": 6}, "last_level must be"), ({"output_stride": 12}, "output_stride must"),
    ({"norm": "layer"}, "norm must be"),
])
def test_backbone_config_is_validated(kwargs, words):
    with pytest.raises(ValueError, match=words):
        BackboneConfig(**kwargs)


def test_group_norm_backbone_trains_on_one_image():
    net = Backbone(BackboneConfig(width=8, last_level=3, norm="group"))
    out = net(torch.randn(1, 3, 32, 32))["C3"]
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


# --- FPN ------------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [(2, 3, 4, 5), (2, 3, 4, 5, 6), (3, 4), (2, 3, 4)])
def test_fpn_equals_torchvision(levels):
    ours = FPN(FPNConfig(width=4, channels=8, levels=levels)).eval()
    built = [k for k in levels if k <= 5]
    extra = LastLevelMaxPool() if 6 in levels else None
    reference = FeaturePyramidNetwork([ours.backbone.channels[f"C{k}"] for k in built], 8,
                                      extra_blocks=extra).eval()
    with torch.no_grad():
        for i, k in enumerate(built):
            reference.inner_blocks[i][0].weight.copy_(ours.lateral[f"P{k}"].weight)
            reference.inner_blocks[i][0].bias.copy_(ours.lateral[f"P{k}"].bias)
            reference.layer_blocks[i][0].weight.copy_(ours.smooth[f"P{k}"].weight)
            reference.layer_blocks[i][0].bias.copy_(ours.smooth[f"P{k}"].bias)
        x = torch.randn(2, 3, 67, 80, generator=torch.Generator().manual_seed(1))
        features = ours.backbone(x)
        want = reference({f"C{k}": features[f"C{k}"] for k in built})
        got = ours(x)
    assert list(got) == [f"P{k}" for k in levels]
    for (name, value), expected in zip(got.items(), want.values()):
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6, msg=name)


def test_fpn_shapes_and_strides():
    net = FPN(FPNConfig(width=8, channels=16, levels=(2, 3, 4, 5, 6)))
    out = net(torch.zeros(2, 3, 128, 192))
    assert net.strides == {"P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64}
    for name, stride in net.strides.items():
        assert out[name].shape == (2, 16, 128 // stride, 192 // stride)
    default = FPNConfig()
    assert (default.width, default.channels, default.levels) == (64, 256, (2, 3, 4, 5))
    assert default.backbone == BackboneConfig()


def test_fpn_gradient_reaches_every_level_and_the_backbone():
    net = FPN(FPNConfig(width=4, channels=8))
    out = net(torch.randn(2, 3, 64, 64))
    out["P2"].sum().backward()  # the finest level sees every backbone stage
    assert all(p.grad is not None and p.grad.abs().sum() > 0
               for p in net.backbone.layer4.parameters())


@pytest.mark.parametrize("levels", [(), (2, 4), (1, 2), (5, 6, 7), (6,)])
def test_fpn_levels_are_validated(levels):
    with pytest.raises(ValueError, match="levels must be consecutive"):
        FPNConfig(levels=levels)


# --- found objects ------------------------------------------------------------------------


def two_objects():
    a = shape_mask("square", (8.0, 8.0), 6, 0.0, 32, 32)
    b = shape_mask("circle", (22.0, 20.0), 10, 0.0, 32, 32)
    return torch.stack([a, b])


def test_found_objects():
    inst = two_objects()
    assert found_objects(inst.any(0), inst).tolist() == [True, True]
    assert found_objects(inst[1], inst).tolist() == [False, True]
    assert found_objects(torch.zeros(32, 32, dtype=torch.bool), inst).tolist() == [False, False]
    moved = shift_masks(inst[:1], 0, 3)[0] | inst[1]  # the square shifted by half its size
    assert found_objects(moved, inst).tolist() == [False, True]
    assert found_objects(moved, inst, iou_threshold=0.3).tolist() == [True, True]
    bridged = inst.any(0).clone()
    bridged[10:20, 10] = True  # a bridge makes one blob of both: at most one is matched
    bridged[19, 10:22] = True
    assert int(found_objects(bridged, inst).sum()) <= 1
    assert found_objects(inst[0], inst[:0]).shape == (0,)


def test_found_objects_bad_input():
    inst = two_objects()
    with pytest.raises(ValueError, match="pred is"):
        found_objects(torch.zeros(16, 16, dtype=torch.bool), inst)
    with pytest.raises(ValueError, match="must be binary"):
        found_objects(torch.full((32, 32), 0.5), inst)


@pytest.mark.parametrize("args", [(32.0, 3), (32, 3, 1.5), (True, 3)])
def test_conv_output_size_wants_integers(args):
    with pytest.raises(ValueError, match="must be an integer"):
        conv_output_size(*args)
