"""Every kind of file a real photo dump contains is decoded correctly or skipped with a reason."""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
import pytest
from helpers import make_image, photo_like, write_class_folders
from PIL import Image

from catdog.data import prepare_dataset
from catdog.data.decode import BadImage, decode_image, header_size
from catdog.data.settings import DataSettings
from catdog.preprocessing import describe, load_image, read_flag

PHOTO = make_image(0, seed=3, size=(40, 32))  # BGR, 32 rows x 40 columns


def encode(img: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def pillow(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **kw)
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; the pixel data is never reached."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 64


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real small JPEG whose frame header is rewritten to claim width x height."""
    data = bytearray(encode(PHOTO, ".jpg"))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize(
    "data",
    [
        encode(PHOTO, ".png"),
        encode(PHOTO, ".bmp"),
        encode(PHOTO, ".webp"),
        pillow(Image.fromarray(PHOTO[:, :, ::-1]), "GIF"),
        pillow(Image.fromarray(PHOTO[:, :, ::-1]).convert("CMYK"), "JPEG", quality=95),
        encode(PHOTO.astype(np.uint16) * 257, ".png"),
        encode(np.dstack([PHOTO, np.full(PHOTO.shape[:2], 128, np.uint8)]), ".png"),
        encode(cv2.cvtColor(PHOTO, cv2.COLOR_BGR2GRAY), ".jpg"),
        encode(cv2.cvtColor(PHOTO, cv2.COLOR_BGR2GRAY), ".png"),
    ],
    ids=["png", "bmp", "webp", "gif", "cmyk-jpeg", "16bit-png", "alpha-png", "gray-jpeg", "gray-png"],
)
@pytest.mark.parametrize("channels", [1, 3])
def test_other_formats_and_colour_models_decode_to_the_same_picture(data, channels):
    """Whatever the file's format or colour model (any name, e.g. .jpg), the pixels come out uint8 and close."""
    img = decode_image(data, resolution=16, channels=channels)
    assert img.shape == (16, 16, channels) and img.dtype == np.uint8
    gray = cv2.resize(cv2.cvtColor(PHOTO, cv2.COLOR_BGR2GRAY), (16, 16), interpolation=cv2.INTER_LINEAR)
    mean_gray = img.mean(axis=2) if channels == 3 else img[:, :, 0]
    assert np.abs(mean_gray.astype(float) - gray).mean() < 20  # same picture, not noise or a blank


def test_colour_is_rgb_ordered():
    blue = np.zeros((20, 20, 3), np.uint8)
    blue[:, :, 0] = 255  # BGR blue
    img = decode_image(encode(blue, ".png"), resolution=8, channels=3)
    assert img[..., 2].min() == 255 and img[..., 0].max() == 0


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"this is a text file named .jpg\n", "not a decodable image"),
        (encode(PHOTO, ".jpg")[:-400], "truncated JPEG"),
        (png_header(100_000, 100_000), "too large (100000x100000 pixels > data.max_pixels="),
        (jpeg_with_size(60_000, 60_000), "too large (60000x60000"),
    ],
    ids=["empty", "text", "truncated", "png-bomb", "jpeg-bomb"],
)
def test_bad_files_raise_with_a_reason(data, reason):
    with pytest.raises(BadImage, match=reason.replace("(", r"\(")):
        decode_image(data, resolution=16)


def test_max_pixels_is_configurable_and_truncated_jpegs_can_be_kept():
    with pytest.raises(BadImage, match="too large"):
        decode_image(encode(PHOTO, ".png"), resolution=16, max_pixels=40 * 32 - 1)
    assert decode_image(encode(PHOTO, ".png"), resolution=16, max_pixels=40 * 32).shape == (16, 16, 1)
    big = cv2.resize(PHOTO, (200, 160))
    truncated = encode(big, ".jpg")[: len(encode(big, ".jpg")) // 2]
    kept = decode_image(truncated, resolution=16, skip_truncated=False)
    assert kept.shape == (16, 16, 1)
    assert (
        kept[:4].std() > 10 and kept[-3:].std() < 2
    )  # the top is the photo, the missing bottom is flat grey


@pytest.mark.parametrize(
    "size", [(500, 375), (375, 500), (180, 180), (100, 99), (64, 64), (17, 400), (2000, 51)]
)
@pytest.mark.parametrize("resolution", [16, 32, 50, 64])
def test_fast_decode_never_goes_below_the_target(size, resolution):
    rng = np.random.default_rng(0)
    data = encode(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), ".jpg")
    assert header_size(data) == size
    for channels in (1, 3):
        flag = read_flag(size, resolution, channels, fast_decode=True)
        reduced = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        fits = min(size) >= resolution
        assert min(reduced.shape[:2]) >= resolution if fits else reduced.shape[:2] == (size[1], size[0])
        assert decode_image(data, resolution, channels, fast_decode=True).shape == (
            resolution,
            resolution,
            channels,
        )


@pytest.mark.parametrize("size", [(400, 300), (900, 700), (1600, 1200)])
@pytest.mark.parametrize("channels", [1, 3])
def test_default_decode_is_what_a_plain_opencv_client_computes(tmp_path, size, channels):
    """imread at full size, resize with INTER_AREA, RGB: a deployer's obvious pipeline gets catdog's very pixels."""
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), photo_like(*size), [cv2.IMWRITE_JPEG_QUALITY, 85])
    plain = cv2.imread(str(path), cv2.IMREAD_COLOR if channels == 3 else cv2.IMREAD_GRAYSCALE)
    plain = cv2.resize(plain, (32, 32), interpolation=cv2.INTER_AREA)
    plain = cv2.cvtColor(plain, cv2.COLOR_BGR2RGB) if channels == 3 else plain[:, :, None]
    catdog_input = decode_image(path.read_bytes(), 32, channels)
    np.testing.assert_array_equal(catdog_input, plain)
    np.testing.assert_array_equal(load_image(path, 32, channels), plain)
    # the opt-in reduced decode is another picture: the reason it must be recorded and stated in exports
    fast = decode_image(path.read_bytes(), 32, channels, fast_decode=True)
    assert np.abs(fast.astype(int) - plain).max() > 0


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory) -> list:
    """JPEGs larger than the target (where fast_decode reduces), a PNG, and one smaller than the target."""
    folder = tmp_path_factory.mktemp("photos")
    files = []
    for size, ext in [((400, 300), ".jpg"), ((900, 700), ".jpg"), ((900, 700), ".png"), ((30, 20), ".jpg")]:
        files.append(folder / f"{size[0]}x{size[1]}{ext}")
        cv2.imwrite(str(files[-1]), photo_like(*size))
    return files


@pytest.mark.parametrize("resize", ["squash", "crop", "pad"])
@pytest.mark.parametrize("fast_decode", [False, True])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_rule_as_written_for_clients_is_the_rule_catdog_follows(
    photo_files, channels, fast_decode, resize
):
    """describe's Python lines (what export JSONs carry), run with cv2 and numpy alone, give load_image's pixels."""
    rule = describe(24, channels, fast_decode, resize)
    assert rule["arguments"] == {
        "resolution": 24,
        "channels": channels,
        "fast_decode": fast_decode,
        "resize": resize,
    }
    for path in photo_files:
        scope = {"cv2": cv2, "np": np, "path": str(path)}
        exec("\n".join(rule["python"]), scope)
        expected = load_image(path, 24, channels, fast_decode, resize).transpose(2, 0, 1)[None]
        np.testing.assert_array_equal(scope["x"], expected)


def test_exif_orientation_is_applied_as_cv2_imread_does(tmp_path):
    """A phone photo stored sideways with an EXIF rotation: decoded upright, in both decode modes."""
    wide = photo_like(120, 60)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    path.write_bytes(pillow(Image.fromarray(wide[:, :, ::-1]), "JPEG", exif=exif.tobytes()))
    upright = cv2.imread(str(path))
    assert upright.shape[:2] == (120, 60)
    for fast_decode in (False, True):
        got = decode_image(path.read_bytes(), 24, 3, fast_decode=fast_decode)
        expected = cv2.cvtColor(
            cv2.resize(upright, (24, 24), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB
        )
        assert np.abs(got.astype(int) - expected).mean() < 3


def test_report_lists_every_skipped_file_with_its_reason(tmp_path):
    root = write_class_folders(tmp_path / "PetImages", per_class=4)
    (root / "Cat" / "666.jpg").write_bytes(b"")
    (root / "Cat" / "Thumbs.db").write_bytes(b"\x00" * 100)
    (root / "Dog" / ".DS_Store").write_bytes(b"\x00" * 10)
    (root / "Dog" / "notes.jpg").write_text("not a photo")
    (root / "Dog" / "cut.jpg").write_bytes(encode(PHOTO, ".jpg")[:-300])
    (root / "Dog" / "png.jpg").write_bytes(encode(PHOTO, ".png"))
    arrays = prepare_dataset(
        DataSettings.from_config(
            dict(source=str(root), resolution=16, cache_dir=str(tmp_path / "cache"), progress=False)
        )
    )
    reasons = {s["path"]: s["reason"] for s in arrays.report["skipped"]}
    assert reasons == {
        "Cat/Thumbs.db": "not an image file (by extension)",
        "Dog/.DS_Store": "macOS metadata file",
        "Cat/666.jpg": "empty file",
        "Dog/notes.jpg": "not a decodable image",
        "Dog/cut.jpg": "truncated JPEG (no end-of-image marker)",
    }
    assert arrays.report["n_skipped"] == 5
    assert arrays.report["per_class"] == {"Cat": 4, "Dog": 5}  # the PNG named .jpg is kept
    assert arrays.images.shape == (9, 16, 16, 1)
