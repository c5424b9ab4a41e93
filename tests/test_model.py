import pytest
import torch
from helpers import ROOT

from catdog.errors import CatdogError
from catdog.models.arch import network_settings
from catdog.models.augment import flip_shift_jitter
from catdog.models.classifier import ImageClassifier
from catdog.models.convnet import ACTIVATION_LAYERS, build_convnet
from catdog.models.convnet_settings import ConvNetSettings


def convnet(in_channels: int, resolution: int, **net) -> torch.nn.Sequential:
    return build_convnet(ConvNetSettings(in_channels, resolution, **net), num_classes=2)


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
    net = convnet(
        in_channels, resolution, channels=channels, kernel=kernel, padding=padding, head=head, hidden=[12]
    )
    x = torch.randint(0, 256, (3, in_channels, resolution, resolution), dtype=torch.uint8)
    assert net(x).shape == (3, 2)


def test_tutorial_net_matches_tutorial_shapes():
    net = convnet(1, 50)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert linears[0].in_features == 512  # 128 channels x 2 x 2, what the tutorial computes with a dummy pass
    assert [m.out_features for m in linears] == [512, 2]


def test_too_small_resolution_names_the_keys_and_the_minimum():
    with pytest.raises(CatdogError) as err:
        ConvNetSettings(1, 20, channels=[32, 64, 128], kernel=5)
    message = str(err.value)
    assert "data.resolution=20" in message and "model.kernel" in message
    need = int(message.split("data.resolution>=")[1].split(",")[0])
    assert need == 36  # 36 -> 32 -> 16 -> 12 -> 6 -> 2 -> 1
    ConvNetSettings(1, need, channels=[32, 64, 128], kernel=5)  # the suggested minimum works
    with pytest.raises(CatdogError):
        ConvNetSettings(1, need - 1, channels=[32, 64, 128], kernel=5)


@pytest.mark.parametrize(
    "net, message",
    [
        (
            {"kernel": [3, 3, 3], "channels": [8, 16]},
            r"model.kernel=\[3, 3, 3\]: give one value, or one per",
        ),
        ({"channels": []}, r"model.channels=\[\] is invalid: expected a list of positive integers"),
        ({"pool_type": "min"}, r"model.pool_type='min' is invalid: expected max or avg"),
        ({"dropout": 1.0}, r"model.dropout=1.0 is invalid: expected a probability in \[0, 1\)"),
        ({"batchnorm": "yes"}, r"model.batchnorm='yes' is invalid: expected true or false"),
        (
            {"kernels": 3},
            r"model.kernels is not a setting of model \(did you mean model.kernel\?\). convnet's keys "
            r"\(model.arch=convnet\): model.channels, model.kernel, ",
        ),
    ],
)
def test_each_network_rule_names_its_key(net, message):
    with pytest.raises(CatdogError, match=message):
        network_settings(net, in_channels=3, resolution=64)


def test_batchnorm_and_dropout_layers_present():
    net = convnet(3, 32, channels=[8, 16], kernel=3, batchnorm=True, dropout=0.3)
    kinds = {type(m).__name__ for m in net}
    assert {"BatchNorm2d", "Dropout"} <= kinds


def test_augment_keeps_shape_dtype_and_content_range():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 20, 20), dtype=torch.uint8)
    y = flip_shift_jitter(x, hflip=True, translate=3, brightness=0.1, contrast=0.1)
    assert y.shape == x.shape and y.dtype == torch.uint8
    flipped = flip_shift_jitter(x, hflip=True)
    for a, b in zip(x, flipped):  # every image is itself or its mirror
        assert torch.equal(a, b) or torch.equal(a.flip(2), b)
    shifted = flip_shift_jitter(x, hflip=False, translate=2)
    assert not torch.equal(shifted, x)


@pytest.mark.parametrize("pool_type,activation", [("avg", "gelu"), ("max", "silu"), ("avg", "leaky_relu")])
def test_pooling_and_activation_choices(pool_type, activation):
    net = convnet(3, 24, channels=[4, 8], kernel=3, pool_type=pool_type, activation=activation, hidden=[8])
    kinds = {type(m).__name__ for m in net}
    assert {
        "AvgPool2d" if pool_type == "avg" else "MaxPool2d",
        type(ACTIVATION_LAYERS[activation]()).__name__,
    } <= kinds
    assert net(torch.zeros(2, 3, 24, 24, dtype=torch.uint8)).shape == (2, 2)


def test_channels_last_gives_the_same_logits_and_compile_wraps_the_net():
    from catdog.models.classifier import ImageClassifier

    torch.manual_seed(0)
    plain = ImageClassifier(3, 16, ["a", "b"], **dict(channels=[4, 8], kernel=3, hidden=[8])).eval()
    fast = ImageClassifier(
        3, 16, ["a", "b"], **dict(channels=[4, 8], kernel=3, hidden=[8]), channels_last=True
    ).eval()
    fast.load_state_dict(plain.state_dict())
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(plain(x), fast(x), atol=1e-5)
    assert fast.net[1].weight.is_contiguous(memory_format=torch.channels_last)
    compiled = ImageClassifier(3, 16, ["a", "b"], **dict(channels=[4], kernel=3, hidden=[]), compile=True)
    assert isinstance(compiled.forward_net, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled.forward_net._orig_mod is compiled.net
    for model in (plain, compiled):  # the weights are stored once, under net., compiled or not
        assert not any(k.startswith("forward_net") for k in model.state_dict())
    assert (
        plain.state_dict().keys()
        == ImageClassifier(3, 16, ["a", "b"], **dict(channels=[4, 8], kernel=3, hidden=[8]), compile=True)
        .state_dict()
        .keys()
    )


@pytest.mark.parametrize(
    "augment, message",
    [
        (
            {"flip": True},
            r"model.augment.flip is not an augmentation \(did you mean model.augment.hflip\?\)",
        ),
        (True, "model.augment=True: give a mapping of hflip, translate, brightness, contrast, resized_crop"),
        (
            {"translate": 16},
            r"model.augment.translate=16: shifts must be 0 <= translate < data.resolution \(16\)",
        ),
    ],
)
def test_wrong_augment_values_are_named_when_the_model_is_built(augment, message):
    with pytest.raises(CatdogError, match=message):
        ImageClassifier(3, 16, ["Cat", "Dog"], **dict(channels=[4], kernel=3, hidden=[]), augment=augment)


@pytest.mark.parametrize("arch", ["convnet", "resnet"])
def test_each_kinds_keys_are_its_settings_fields_and_its_cards_network_keys(arch):
    from dataclasses import fields

    from omegaconf import OmegaConf

    from catdog.models.arch import settings_class

    cls = settings_class(arch)
    assert set(cls.keys()) == {f.name for f in fields(cls) if f.init} - {"in_channels", "resolution"}
    card = OmegaConf.load(ROOT / "configs" / "model" / f"{arch}.yaml")
    assert set(card) - {"defaults", "arch"} == set(cls.keys()) and card.arch == arch


def test_the_model_keys_the_config_check_knows_are_the_classifiers_arguments():
    import inspect

    from catdog.models.classifier import ImageClassifier
    from catdog.models.settings import CLASSIFIER_KEYS, MODEL_KEYS

    named = set(inspect.signature(ImageClassifier).parameters) - {"net"}  # **net: the network's keys
    assert named == (set(CLASSIFIER_KEYS) - {"_target_"}) | set(MODEL_KEYS)


def test_pool_after_conv_pools_before_the_stages_last_norm_and_activation():
    net = convnet(3, 32, channels=[4, 8], kernel=3, padding="same", convs_per_stage=2, batchnorm=True)
    kinds = [type(m).__name__ for m in net]
    early = convnet(
        3,
        32,
        channels=[4, 8],
        kernel=3,
        padding="same",
        convs_per_stage=2,
        batchnorm=True,
        pool_after_conv=True,
    )
    early_kinds = [type(m).__name__ for m in early]
    stage = ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]
    assert kinds[1:9] == [*stage, "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d"]
    assert early_kinds[1:9] == [*stage, "MaxPool2d", "BatchNorm2d", "ReLU", "Conv2d"]
    assert sorted(kinds) == sorted(early_kinds)  # the same layers in another order
    assert early(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 2)
    # batch norm in the early order normalizes the pooled 16x16 map of stage one's last conv, not the 32x32 one
    sides: list[int] = []
    early[6].register_forward_hook(lambda m, i, o: sides.append(i[0].shape[-1]))
    early(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))
    assert isinstance(early[6], torch.nn.BatchNorm2d) and sides == [16]


def copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Layer by layer in order (the state dicts' keys are layer indices, which the pooling's place shifts)."""
    with torch.no_grad():
        for a, b in zip(source.parameters(), target.parameters(), strict=True):
            b.copy_(a)


def test_without_batch_norm_pool_after_conv_is_the_same_function_with_max_pool_and_relu():
    """max pooling and ReLU commute (both monotone), so moving the pool up changes only the cost."""
    torch.manual_seed(0)
    net = convnet(3, 32, channels=[4, 8], kernel=3, hidden=[8]).eval()
    early = convnet(3, 32, channels=[4, 8], kernel=3, hidden=[8], pool_after_conv=True).eval()
    copy_weights(net, early)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(net(x), early(x), atol=1e-6)
    avg = convnet(3, 32, channels=[4, 8], kernel=3, hidden=[8], pool_type="avg").eval()
    avg_early = convnet(3, 32, channels=[4, 8], kernel=3, hidden=[8], pool_type="avg", pool_after_conv=True)
    copy_weights(avg, avg_early.eval())
    assert not torch.allclose(avg(x), avg_early(x), atol=1e-6)  # average pooling and ReLU do not commute


def test_pool_after_conv_must_be_a_bool():
    with pytest.raises(CatdogError, match=r"model.pool_after_conv='yes' is invalid: expected true or false"):
        network_settings({"pool_after_conv": "yes"}, in_channels=3, resolution=64)


def test_convs_per_stage_takes_one_count_per_stage():
    net = convnet(
        3, 32, channels=[4, 8, 16], kernel=3, padding="same", convs_per_stage=[1, 3, 2], head="gap", hidden=[]
    )
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (3, 4),
        (4, 8),
        (8, 8),
        (8, 8),
        (8, 16),
        (16, 16),
    ]
    assert net(torch.zeros(2, 3, 32, 32, dtype=torch.uint8)).shape == (2, 2)
    # valid padding: each conv shrinks the map, so the per-stage counts decide the sizes
    spec = ConvNetSettings(3, 40, channels=[4, 8], kernel=3, convs_per_stage=[1, 3], hidden=[])
    assert spec.stage_sizes() == [(40 - 2) // 2, (19 - 6) // 2]
    assert ConvNetSettings(3, 32, convs_per_stage=2, channels=[4, 8]).convs == [2, 2]


@pytest.mark.parametrize(
    "convs_per_stage,message",
    [
        (
            [1, 2, 2],
            r"model.convs_per_stage=\[1, 2, 2\]: give one value, or one per stage \(2, the length",
        ),
        (
            [0, 2],
            r"model.convs_per_stage=\[0, 2\] is invalid: expected a positive integer or one per conv stage",
        ),
        (0, r"model.convs_per_stage=0 is invalid"),
    ],
)
def test_wrong_convs_per_stage_is_named(convs_per_stage, message):
    with pytest.raises(CatdogError, match=message):
        ConvNetSettings(3, 32, channels=[4, 8], convs_per_stage=convs_per_stage)
