"""Retake the README's screenshot of a sweep's report page (summary.html) in headless Chromium.

    python docs/sweep_report.py <sweep dir> [--out docs/sweep-report.png]

Playwright (the `dev` extra) drives Debian's `chromium` (or `--chromium PATH`) at 1200 px wide and saves the whole
page. Look at the picture before committing it.
"""

import argparse
import shutil
from pathlib import Path

from playwright.sync_api import sync_playwright


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "sweep-report.png")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args()
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
