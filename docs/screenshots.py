"""Retake the README's TensorBoard screenshots and the demo page's from one finished training run.

    python docs/screenshots.py <run dir> [--out outputs/screenshots] [--photo cat.jpg --photo dog.jpg]

Starts TensorBoard on the run's `tensorboard/` events (a free local port), opens it in headless Chromium
through Playwright (the `dev` extra; Chromium from `--chromium` or `chromium` on PATH) at 1400x1000 and writes
tensorboard-scalars.png (train and val curves), tensorboard-images.png (feature maps) and
tensorboard-mistakes.png (conv1 kernels, confusion matrix, the mistakes with their Grad-CAM heatmaps).
With --photo, it also serves the run's best checkpoint (`python -m catdog.serve`), drops the photos on the demo
page and writes serve.png (label, probabilities and Grad-CAM heatmap of each). They go to outputs/screenshots/,
not over the repository's pictures: `--out docs` replaces the README's. Look at every picture before committing it.
"""

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

VIEWPORT = {"width": 1400, "height": 1000}
# charts and images load after the page; 4 s covers a loaded laptop
SETTLE_S = 4.0


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, timeout_s: float = 60.0) -> None:
    """Poll TensorBoard until it answers."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def shoot(page: Page, url: str, out: Path, scroll_to: str | None = None, untick: str | None = None) -> None:
    """Open one dashboard view, optionally untick a setting and scroll a card into view, and save the viewport."""
    page.goto(url)
    time.sleep(SETTLE_S)
    if untick:
        page.get_by_text(untick, exact=True).click()
        time.sleep(1.0)
    if scroll_to:
        page.get_by_text(scroll_to, exact=True).first.evaluate("e => e.scrollIntoView({block: 'start'})")
        time.sleep(1.0)
    page.screenshot(path=str(out))
    print(f"wrote {out}")


def shoot_demo(page: Page, run_dir: Path, photos: list[Path], out: Path) -> None:
    """The demo page of the run's best checkpoint with `photos` picked, as the README shows it."""
    ckpt = next(p for p in sorted((run_dir / "checkpoints").glob("*.ckpt")) if p.name != "last.ckpt")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "catdog.serve", f"ckpt_path={ckpt}", f"port={port}", "host=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url)
        page.set_viewport_size({"width": 900, "height": 1000})
        page.goto(url)
        page.set_input_files("#files", [str(p) for p in photos])
        page.locator("[data-testid=label]").nth(len(photos) - 1).wait_for(timeout=60_000)
        time.sleep(SETTLE_S)
        page.screenshot(path=str(out), full_page=True)
        print(f"wrote {out}")
    finally:
        server.terminate()
        server.wait()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--photo", type=Path, action="append", default=[], help="a photo for the demo page")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/screenshots"),
        help="the folder to write the pictures to (docs: the README's)",
    )
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    return parser.parse_args(argv)


def pictures(args: argparse.Namespace) -> dict[str, Path]:
    """The files this run writes, by what they show."""
    names = ["scalars", "images", "mistakes"]
    shots = {name: args.out / f"tensorboard-{name}.png" for name in names}
    return shots | ({"serve": args.out / "serve.png"} if args.photo else {})


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = pictures(args)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"writing {', '.join(map(str, out.values()))}")
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    tensorboard = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen(
        [str(tensorboard), "--logdir", str(args.run_dir), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_up(base)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True)
            page = browser.new_page(viewport=VIEWPORT)
            # TensorBoard's default smoothing and outlier-ignoring scale cut a few epochs' curves off: raw, whole curves
            shoot(
                page,
                base + "#scalars&_smoothingWeight=0&tagFilter=val%7Ctrain%2F",
                out["scalars"],
                untick="Ignore outliers in chart scaling",
            )
            shoot(page, base + "#images&tagFilter=features%2F", out["images"])
            shoot(
                page,
                base + "#images&tagFilter=conv1%7Cval%2F",
                out["mistakes"],
                scroll_to="model/conv1_kernels",
            )
            if args.photo:
                shoot_demo(page, args.run_dir, args.photo, out["serve"])
            browser.close()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
