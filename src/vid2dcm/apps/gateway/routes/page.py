"""The staff page and its static assets (plain HTML, CSS and JavaScript; no build step, no
inline script, so the Content-Security-Policy can forbid inline code)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

WEB = Path(__file__).resolve().parent.parent / "web"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "docs.js": "text/javascript",
          "recording.js": "text/javascript", "common.js": "text/javascript",
          # capture page (record on a phone)
          "capture.js": "text/javascript", "capture.css": "text/css",
          "icon.svg": "image/svg+xml", "icon-192.png": "image/png",
          # wristband barcodes where the browser has no BarcodeDetector (Apache-2.0)
          "zxing.min.js": "text/javascript", "zxing-LICENSE.txt": "text/plain"}

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def page() -> str:
    return (WEB / "index.html").read_text(encoding="utf-8")


@router.get("/capture", response_class=HTMLResponse)
def capture_page() -> str:
    """Record on a phone or in a browser: same sign-in and API as the staff page."""
    return (WEB / "capture.html").read_text(encoding="utf-8")


@router.get("/manifest.webmanifest")
def manifest() -> FileResponse:
    """Lets staff add the capture page to the home screen."""
    return FileResponse(WEB / "manifest.webmanifest", media_type="application/manifest+json")


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, "no such file")
    return FileResponse(WEB / name, media_type=ASSETS[name])
