"""model.augment's policies on whole batches: what each does to the images and the labels, its checks, a training run."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import ROOT, tiny_overrides, train_in_process

from catdog.errors import CatdogError
from catdog.models.augment import augment_batch, flip_shift_jitter, mix
from catdog.models.augment_settings import AugmentSettings, AugMix, ResizedCrop, augment_settings
from catdog.models.policies import (
    AUGMIX_OPS,
    TRIVIAL_OPS,
    augmix,
    blur,
    color_ops,
    crop_and_trivial_augment,
    geometric_matrices,
    warp,
)

EVERYTHING = {
    "hflip": True,
    "translate": 2,
    "brightness": 0.1,
    "contrast": 0.1,
    "resized_crop": {"scale": [0.35, 1]},
    "trivial_augment": 1,
    "augmix": {"width": 2, "depth": 2},
    "mixup": 0.2,
    "cutmix": 1.0,
    "blur": 0.02,
}
POLICIES = [
    {"resized_crop": True},
    {"trivial_augment": 1.0},
    {"augmix": True},
    {"blur": 0.04},
    {"mixup": 0.4},
    {"cutmix": 1.0},
    {"mixup": 0.4, "cutmix": 1.0},
    EVERYTHING,
]


def batch(n: int = 16, channels: int = 3, side: int = 24, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, channels, side, side), dtype=torch.uint8, generator=g)
    return x, torch.arange(n) % 2


def run(augment: dict, x: torch.Tensor, y: torch.Tensor, seed: int = 0):
    torch.manual_seed(seed)
    return augment_batch(x, y, augment_settings(augment, x.shape[-1]), 2)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("augment", POLICIES)
def test_every_policy_keeps_the_batch_and_repeats_under_a_seed(augment, channels):
    x, y = batch(channels=channels)
    out, target = run(augment, x, y)
    assert out.shape == x.shape and out.dtype == torch.uint8 and not torch.equal(out, x)
    again, target_again = run(augment, x, y)
    assert torch.equal(out, again)
    assert not torch.equal(out, run(augment, x, y, seed=1)[0])
    if augment.get("mixup") or augment.get("cutmix"):
        assert target.shape == (len(y), 2) and torch.equal(target, target_again)
        assert (target >= 0).all() and torch.allclose(target.sum(1), torch.ones(len(y)))
    else:
        assert target is None


def test_the_presets_augmentation_draws_as_before():
    # fast's and best's keys take the uint8 path only, drawing what 0.3 drew: their runs reproduce
    x, y = batch()
    out, target = run({"hflip": True, "translate": 6, "brightness": 0.1, "contrast": 0.1}, x, y)
    torch.manual_seed(0)
    n = len(x)
    flip = torch.rand(n) < 0.5
    dy, dx = torch.randint(0, 13, (n,)), torch.randint(0, 13, (n,))
    contrast, brightness = torch.rand(n, 1, 1, 1), torch.rand(n, 1, 1, 1)
    for i in range(n):
        image = x[i].flip(2) if flip[i] else x[i]
        padded = torch.nn.functional.pad(image.float()[None], (6,) * 4, mode="reflect")[0]
        xf = padded[:, dy[i] : dy[i] + 24, dx[i] : dx[i] + 24]
        xf = (xf - xf.mean()) * (1 + (contrast[i] * 2 - 1) * 0.1) + xf.mean()
        xf = (xf + (brightness[i] * 2 - 1) * 0.1 * 255).clamp(0, 255).to(torch.uint8)
        assert torch.equal(out[i], xf)
    assert target is None


def test_the_crop_zooms_in_by_the_square_root_of_its_area():
    # a ramp along the width: a crop of a quarter of the area (half the side) halves the ramp's range in view
    ramp = torch.arange(0, 256, 4, dtype=torch.uint8)  # 64 columns
    x = ramp.view(1, 1, 1, 64).expand(32, 3, 64, 64).contiguous()
    y = torch.zeros(32, dtype=torch.long)
    crop = {"scale": [0.25, 0.25], "ratio": [1, 1]}
    out, _ = run({"hflip": False, "resized_crop": crop}, x, y)
    spans = out[:, 0, 0, -1].float() - out[:, 0, 0, 0].float()
    assert ((spans - 126).abs() <= 4).all()  # half of 252, up to bilinear rounding at the ends
    assert (out[:, 0] == out[:, 0, :1]).all()  # rows unchanged: no rotation or shear
    assert len(set(out[:, 0, 0, 0].tolist())) > 4  # each image its own place
    whole, _ = run({"hflip": False, "resized_crop": {"scale": [1, 1], "ratio": [1, 1]}}, x, y)
    assert torch.equal(whole, x)  # the whole image is the identity, bit for bit


def _apply(x: torch.Tensor, names: tuple[str, ...], name: str, m: float) -> torch.Tensor:
    op = torch.full((len(x),), names.index(name))
    magnitude = torch.full((len(x),), m)
    return color_ops(warp(x, geometric_matrices(names, op, magnitude)), names, op, magnitude)


@pytest.mark.parametrize("name", [n for n in TRIVIAL_OPS if n not in ("autocontrast", "equalize")])
def test_every_op_is_the_identity_at_magnitude_0_and_acts_at_1(name):
    x, _ = batch(4)
    xf = x.float() / 255
    assert torch.equal(_apply(xf, TRIVIAL_OPS, name, 0.0), xf)
    if name != "identity":
        assert (_apply(xf, TRIVIAL_OPS, name, 1.0) - xf).abs().mean() > 0.01


def test_ops_do_what_their_names_say():
    x, _ = batch(4, side=32)
    xf = x.float() / 255
    assert torch.allclose(_apply(xf, TRIVIAL_OPS, "solarize", 1.0), 1 - xf)  # threshold 0: all inverted
    levels = (_apply(xf, TRIVIAL_OPS, "posterize", 1.0) * 255).round()
    assert torch.equal(levels % 16, torch.zeros_like(levels))  # 4 bits left
    dim = xf * 0.5 + 0.25
    stretched = _apply(dim, TRIVIAL_OPS, "autocontrast", 0.0)
    assert torch.allclose(stretched.amin((2, 3)), torch.zeros(4, 3)) and torch.allclose(
        stretched.amax((2, 3)), torch.ones(4, 3)
    )
    gray = _apply(xf, TRIVIAL_OPS, "color", -1.0 / 0.9)  # factor 0: grey
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-6)
    # a quarter turn of a square: rotate at 90 degrees is a transpose-and-flip
    quarter = warp(
        xf, geometric_matrices(("rotate",), torch.zeros(4, dtype=torch.long), torch.full((4,), 3.0))
    )
    assert torch.allclose(quarter, torch.rot90(xf, 1, (2, 3)), atol=1e-5) or torch.allclose(
        quarter, torch.rot90(xf, -1, (2, 3)), atol=1e-5
    )
    shifted = _apply(xf, TRIVIAL_OPS, "translate_x", 2 / 32 / 0.9)  # 0.45 x 2/32/0.9 of 32 px: 1 px
    assert torch.allclose(shifted[..., 1:-1], xf[..., 2:], atol=1e-5) or torch.allclose(
        shifted[..., 1:-1], xf[..., :-2], atol=1e-5
    )


def test_trivial_augment_draws_one_op_per_image():
    x, _ = batch(64, side=16)
    torch.manual_seed(0)
    out = crop_and_trivial_augment(x.float() / 255, None, 1.0)
    changed = (out - x.float() / 255).abs().flatten(1).amax(1) > 1e-6
    # identity (1 in 14) and tiny magnitudes leave some images alone, the rest change each in its own way
    assert 40 < changed.sum() < 64


def test_blur_smooths_about_half_the_images_no_more_than_the_largest_sigma():
    from catdog.explain.robustness import blur as report_blur

    x, _ = batch(64, side=32)
    xf = x.float() / 255
    torch.manual_seed(0)
    out = blur(xf, 0.04)
    changed = (out != xf).flatten(1).any(1)
    assert 20 < changed.sum() < 44 and torch.equal(out[~changed], xf[~changed])

    def roughness(images: torch.Tensor) -> torch.Tensor:
        return (images[..., 1:] - images[..., :-1]).abs().mean((1, 2, 3))

    # each blurred image is no rougher than itself (the smallest sigmas change only rounding) and no smoother than the
    # report's blur at the largest sigma
    strongest = torch.stack(
        [
            torch.from_numpy(report_blur(im.permute(1, 2, 0).numpy(), 0.04)).permute(2, 0, 1)
            for im in xf[changed]
        ]
    )
    assert (roughness(out[changed]) <= roughness(xf[changed]) + 1e-5).all()
    assert (
        roughness(out[changed]) < 0.9 * roughness(xf[changed])
    ).float().mean() > 0.6  # sigmas under ~0.3 px barely smooth
    assert (roughness(out[changed]) >= roughness(strongest) - 1e-4).all()
    # the report's unit and border: each blurred image is the report's blur at the sigma it drew (replayed; the
    # report's kernel reaches +-4 sigma, this one +-3 of the largest)
    torch.manual_seed(0)
    drew = torch.rand(64) < 0.5
    sigmas = (torch.rand(int(drew.sum())) * 0.04 * 32).clamp(min=1e-3)
    assert not (changed & ~drew).any()  # only the images that drew a blur changed
    for blurred, im, sigma in zip(out[drew], xf[drew], sigmas, strict=True):
        report = torch.from_numpy(report_blur(im.permute(1, 2, 0).numpy(), float(sigma) / 32)).permute(
            2, 0, 1
        )
        assert torch.allclose(blurred, report, atol=2e-3)


def test_augmix_blends_chains_into_the_image():
    x, _ = batch(32)
    xf = x.float() / 255
    torch.manual_seed(0)
    out = augmix(xf, AugMix(width=3, depth=3))
    assert out.shape == xf.shape and out.min() >= 0 and out.max() <= 1
    # AugMix keeps the image recognisable: every output correlates with its own input more than with any other
    a = (out - out.mean((1, 2, 3), keepdim=True)).flatten(1)
    b = (xf - xf.mean((1, 2, 3), keepdim=True)).flatten(1)
    corr = (a / a.norm(dim=1, keepdim=True)) @ (b / b.norm(dim=1, keepdim=True)).T
    assert torch.equal(corr.argmax(1), torch.arange(32))
    assert set(AUGMIX_OPS).isdisjoint({"brightness", "color", "contrast", "sharpness"})


def test_mixup_mixes_the_labels_with_the_weights_of_the_pixels():
    # cats are black, dogs are 200 grey: a mixed image's grey level is its dog share
    n = 64
    y = torch.arange(n) % 2
    x = (y * 200).to(torch.uint8).view(-1, 1, 1, 1).expand(n, 3, 8, 8).contiguous()
    torch.manual_seed(0)
    out, target = mix(x.float(), y, 2, mixup=0.4, cutmix=0)
    assert torch.allclose(out.mean((1, 2, 3)) / 200, target[:, 1], atol=1e-5)
    assert 0.05 < (target[:, 1] - y).abs().mean() < 0.45  # mixed, neither nothing nor everything


def test_cutmix_pastes_a_box_and_weighs_labels_by_its_area():
    n = 64
    y = torch.arange(n) % 2
    x = (y * 200).to(torch.uint8).view(-1, 1, 1, 1).expand(n, 1, 16, 16).contiguous()
    torch.manual_seed(0)
    out, target = mix(x, y, 2, mixup=0, cutmix=1.0)
    assert out.dtype == torch.uint8
    assert torch.allclose((out == 200).float().mean((1, 2, 3)), target[:, 1])  # exact: pixels counted
    cut = out != x
    for image in cut[:, 0]:  # what was pasted is one rectangle
        rows, cols = image.any(1).nonzero(), image.any(0).nonzero()
        if len(rows):
            assert image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
    torch.manual_seed(0)
    both, target = mix(x.float(), y, 2, mixup=0.4, cutmix=1.0)
    flat = (both == both[:, :, :1, :1]).flatten(1).all(1)  # mixup images are flat, cutmix ones (mostly) not
    assert 10 < flat.sum() < 54


def test_the_augmentation_is_float32_under_bf16_autocast():
    x, y = batch()
    plain, _ = run(EVERYTHING, x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast, _ = run(EVERYTHING, x, y)
    assert torch.equal(plain, autocast)


def test_soft_targets_train_with_label_smoothing_and_dominant_label_accuracy():
    from catdog.models.classifier import ImageClassifier

    model = ImageClassifier(
        3, 16, ["cat", "dog"], channels=[4], kernel=3, hidden=[], label_smoothing=0.1, augment={"mixup": 0.4}
    )
    logits = torch.randn(6, 2)
    target = torch.tensor([[1.0, 0.0], [0.3, 0.7], [0.6, 0.4], [0.0, 1.0], [0.5, 0.5], [0.9, 0.1]])
    smoothed = target * 0.9 + 0.05
    expected = -(smoothed * logits.log_softmax(1)).sum(1).mean()
    assert torch.allclose(model.loss_fn(logits, target), expected)
    hard = torch.tensor([0, 1, 0, 1, 0, 0])
    assert torch.allclose(model.loss_fn(logits, hard), model.loss_fn(logits, torch.eye(2)[hard]))
    assert model.augment_settings == AugmentSettings(mixup=0.4)


@pytest.mark.parametrize(
    "augment, message",
    [
        (
            {"resized_crop": {"scale": [0.5, 2]}},
            "model.augment.resized_crop.scale=[0.5, 2] is invalid: expected [lo, hi]",
        ),
        (
            {"resized_crop": {"zoom": 2}},
            "model.augment.resized_crop={'zoom': 2} is invalid: expected true or a mapping of scale, ratio",
        ),
        ({"resized_crop": {"ratio": [2, 1]}}, "model.augment.resized_crop.ratio=[2, 1] is invalid"),
        ({"trivial_augment": 2}, "model.augment.trivial_augment=2 is invalid: expected a number in [0, 1]"),
        ({"trivial_augment": "wide"}, "model.augment.trivial_augment='wide' is invalid"),
        ({"augmix": {"width": 0}}, "model.augment.augmix.width=0 is invalid: expected an integer in [1, 8]"),
        (
            {"augmix": {"severity": 0}},
            "model.augment.augmix.severity=0 is invalid: expected a number in (0, 1]",
        ),
        ({"mixup": -0.2}, "model.augment.mixup=-0.2 is invalid: expected a number in [0, 100]"),
        ({"cutmix": True}, "model.augment.cutmix=True is invalid"),
        ({"blur": 0.5}, "model.augment.blur=0.5 is invalid: expected a number in [0, 0.1]"),
        ({"hflip": "yes"}, "model.augment.hflip='yes' is invalid: expected true or false"),
        ({"brightness": 2}, "model.augment.brightness=2 is invalid"),
        (
            {"plain_last_epochs": -1},
            "model.augment.plain_last_epochs=-1 is invalid: expected a whole number of epochs >= 0",
        ),
        ({"plain_last_epochs": 1.5}, "model.augment.plain_last_epochs=1.5 is invalid"),
        (
            {"trivial": 1},
            "model.augment.trivial is not an augmentation (did you mean model.augment.trivial_augment?)",
        ),
    ],
)
def test_wrong_values_are_one_line_naming_the_key(augment, message):
    with pytest.raises(CatdogError, match=re.escape(message)) as caught:
        augment_settings(augment, 32)
    assert "\n" not in str(caught.value)


def test_every_wrong_augmentation_is_named_at_once():
    with pytest.raises(CatdogError) as caught:
        augment_settings({"blur": 1, "trivial": 1, "translate": 40, "hflip": True, "mixup": -1}, 32)
    lines = str(caught.value).splitlines()
    assert lines[0] == "4 config values cannot work:"
    assert [line.split("=")[0].split(" ")[2] for line in lines[1:]] == [
        "model.augment.blur",
        "model.augment.trivial",
        "model.augment.translate",
        "model.augment.mixup",
    ]


def test_the_spec_fills_defaults():
    spec = augment_settings({"resized_crop": True, "augmix": {"width": 2}, "trivial_augment": True}, 32)
    assert spec.hflip and spec.resized_crop == ResizedCrop() and spec.augmix == AugMix(width=2)
    assert spec.trivial_augment == 1.0 and not spec.mixes_labels
    assert augment_settings(None, 32) is None and augment_settings({}, 32) is None


def test_the_plain_last_epochs_keep_only_flips_and_shifts():
    augment = {"translate": 4, "trivial_augment": 1, "blur": 0.02, "mixup": 0.2, "plain_last_epochs": 2}
    spec = augment_settings(augment, 32)
    assert [spec.for_epoch(e, 6) is spec for e in range(6)] == [True] * 4 + [False] * 2
    plain = spec.for_epoch(4, 6)
    assert (
        plain == AugmentSettings(hflip=True, translate=4) and not plain.needs_float and not plain.mixes_labels
    )
    x, y = batch(side=32)
    torch.manual_seed(0)
    images, target = augment_batch(x, y, plain, 2)
    torch.manual_seed(0)
    assert torch.equal(images, flip_shift_jitter(x, True, 4)) and target is None
    always = augment_settings({"trivial_augment": 1}, 32)
    assert always.for_epoch(5, 6) is always


@pytest.mark.parametrize("max_epochs", [2, -1])
def test_the_plain_epochs_need_a_longer_run(max_epochs):
    from hydra import compose, initialize_config_dir

    from catdog.run.checks import validate

    overrides = [
        "experiment=fast_robust",
        "+model.augment.plain_last_epochs=2",
        f"trainer.max_epochs={max_epochs}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
        validate(compose("train", overrides=overrides[:2]))  # 16 epochs, the last 2 plain
    message = f"model.augment.plain_last_epochs=2 needs trainer.max_epochs above it (it is {max_epochs})"
    with pytest.raises(CatdogError, match=re.escape(message)):
        validate(cfg)


@pytest.mark.slow
def test_a_run_trains_its_last_epochs_plain(image_folder, tmp_path, monkeypatch):
    import catdog.models.classifier as classifier

    seen: list[tuple[int, AugmentSettings]] = []

    def recording(x, y, spec, num_classes):  # the real augmentation, with what each step asked of it
        seen.append((x.shape[0], spec))
        return augment_batch(x, y, spec, num_classes)

    monkeypatch.setattr(classifier, "augment_batch", recording)
    augment = "model.augment={translate:2,trivial_augment:1,blur:0.02,plain_last_epochs:1}"
    train_in_process(*tiny_overrides(image_folder, tmp_path), augment, "trainer.max_epochs=3")
    specs = [spec for _, spec in seen]
    per_epoch = len(specs) // 3  # as many steps in each epoch
    assert len(specs) == 3 * per_epoch and per_epoch > 0
    assert all(s.trivial_augment == 1 and s.blur == 0.02 for s in specs[: 2 * per_epoch])
    assert all(s == AugmentSettings(hflip=True, translate=2) for s in specs[2 * per_epoch :])


@pytest.mark.slow
def test_a_wrong_value_stops_the_run_before_any_photo_is_decoded(image_folder, tmp_path):
    with pytest.raises(CatdogError, match=r"model\.augment\.cutmix='a lot' is invalid"):
        train_in_process(*tiny_overrides(image_folder, tmp_path), "model.augment={cutmix:'a lot'}")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
def test_a_tiny_run_trains_with_every_policy(image_folder, tmp_path):
    augment = (
        "{hflip:true,translate:2,brightness:0.1,contrast:0.1,resized_crop:{scale:[0.35,1]},trivial_augment:1,"
        "augmix:{width:2,depth:2},mixup:0.2,cutmix:1.0,blur:0.02}"
    )
    metrics = train_in_process(*tiny_overrides(image_folder, tmp_path), f"model.augment={augment}")
    assert 0 <= metrics["train/acc"] <= 1 and metrics["train/loss"] > 0


# what each robust preset adds to its base, chosen on val (docs/benchmark-log.md): TrivialAugment 1 to both; fast_robust also
# blur 0.02 over 16 epochs whose first 8 grow from 32 px (the sixteenth round)
ROBUST_CHANGES = {
    "fast": (
        {"trivial_augment": 1, "blur": 0.02},
        {"progressive_resize": {"start": 32, "until_epoch": 8}},
        {"max_epochs": 16},
    ),
    "best": ({"trivial_augment": 1}, {}, {}),
}


@pytest.mark.parametrize("base", ["fast", "best"])
def test_the_robust_presets_change_only_what_was_chosen_on_val(base):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from catdog.run.checks import validate

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        plain, robust = (compose("train", overrides=[f"experiment={e}"]) for e in (base, f"{base}_robust"))
    validate(robust)
    spec = augment_settings(OmegaConf.to_container(robust.model.augment), robust.data.resolution)
    assert spec.trivial_augment == 1 and not spec.resized_crop and not spec.augmix
    plain, robust = (OmegaConf.to_container(c, resolve=False) for c in (plain, robust))
    augment, model, trainer = ROBUST_CHANGES[base]
    assert robust["model"]["augment"] == {**plain["model"]["augment"], **augment}
    assert {k: robust["model"][k] for k in model} == model and {
        k: robust["trainer"][k] for k in trainer
    } == trainer
    for cfg in (plain, robust):
        del cfg["model"]["augment"], cfg["tags"]
        for k in model:
            del cfg["model"][k]
        for k in trainer:
            del cfg["trainer"][k]
    assert plain == robust


def test_the_benchmark_times_every_policy_against_a_step():
    from benchmarks.augment import POLICIES, augment_lines, augment_seconds, step_seconds

    for policy in POLICIES.values():
        augment_settings(policy, 64)  # every benchmarked policy is a valid model.augment
    seconds = augment_seconds(POLICIES["resized_crop + trivial_augment"], batch=4, resolution=16, calls=2)
    step = step_seconds(batch=4, resolution=16, calls=2)
    assert seconds > 0 and step > 0  # times were taken; how long is the benchmark's to say
    lines = augment_lines(0.1, {"crop": 0.005})
    assert lines[0].startswith("Training step of the fast net") and lines[-1] == "| crop | 5.00 | 5.0% |"
