"""Retake the README's screenshot of a sweep's report page (summary.html) in headless Chromium.

    python docs/sweep_report.py <sweep dir> [--out outputs/screenshots/sweep-report.png]

Playwright (the `dev` extra) drives Debian's `chromium` (or `--chromium PATH`) at 1200 px wide and saves the whole
page, by default under outputs/ (not the repository's picture): `--out docs/sweep-report.png` replaces the README's.
Look at the picture before committing it.
"""

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("outputs/screenshots/sweep-report.png"),
        help="the picture to write (docs/sweep-report.png: the README's)",
    )
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"writing {args.out}")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto((args.sweep / "summary.html").resolve().as_uri())
        page.wait_for_selector(".js-plotly-plot")
        page.wait_for_timeout(1500)  # plotly lays out after the first paint
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
