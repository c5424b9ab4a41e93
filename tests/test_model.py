import pytest
import torch

from catdog.errors import CatdogError
from catdog.models.augment import augment_batch
from catdog.models.convnet import build_convnet, min_resolution


@pytest.mark.parametrize(
    "in_channels,resolution,channels,kernel,padding,head",
    [
        (1, 50, [32, 64, 128], 5, "valid", "flatten"),  # the tutorial's net
        (3, 64, [8, 16], [5, 3], "valid", "flatten"),
        (3, 32, [8, 16, 32], 3, "same", "gap"),
        (1, 17, [4], 7, "valid", "flatten"),
    ],
)
def test_convnet_infers_flattened_size(in_channels, resolution, channels, kernel, padding, head):
    net = build_convnet(in_channels, resolution, 2, channels, kernel, padding=padding, head=head, hidden=[12])
    x = torch.randint(0, 256, (3, in_channels, resolution, resolution), dtype=torch.uint8)
    assert net(x).shape == (3, 2)


def test_tutorial_net_matches_tutorial_shapes():
    net = build_convnet(1, 50, 2)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert linears[0].in_features == 512  # 128 channels x 2 x 2, what the tutorial computes with a dummy pass
    assert [m.out_features for m in linears] == [512, 2]


def test_too_small_resolution_names_the_keys_and_the_minimum():
    with pytest.raises(CatdogError) as err:
        build_convnet(1, 20, 2, [32, 64, 128], 5)
    message = str(err.value)
    assert "data.resolution=20" in message and "model.kernel" in message
    need = min_resolution([5, 5, 5], 2, "valid", 1)
    assert f"data.resolution>={need}" in message
    build_convnet(1, need, 2, [32, 64, 128], 5)  # the suggested minimum works
    with pytest.raises(CatdogError):
        build_convnet(1, need - 1, 2, [32, 64, 128], 5)


def test_kernel_list_must_match_stages():
    with pytest.raises(CatdogError, match="model.kernel"):
        build_convnet(1, 50, 2, [8, 16], [3, 3, 3])


def test_batchnorm_and_dropout_layers_present():
    net = build_convnet(3, 32, 2, [8, 16], 3, batchnorm=True, dropout=0.3)
    kinds = {type(m).__name__ for m in net}
    assert {"BatchNorm2d", "Dropout"} <= kinds


def test_augment_keeps_shape_dtype_and_content_range():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 20, 20), dtype=torch.uint8)
    y = augment_batch(x, hflip=True, translate=3, brightness=0.1, contrast=0.1)
    assert y.shape == x.shape and y.dtype == torch.uint8
    flipped = augment_batch(x, hflip=True)
    for a, b in zip(x, flipped):  # every image is itself or its mirror
        assert torch.equal(a, b) or torch.equal(a.flip(2), b)
    shifted = augment_batch(x, hflip=False, translate=2)
    assert not torch.equal(shifted, x)
