"""The staff page and its static assets (plain HTML, CSS and JavaScript; no build step, no
inline script, so the Content-Security-Policy can forbid inline code)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse, HTMLResponse

WEB = Path(__file__).resolve().parent.parent / "web"
ASSETS = {"app.js": "text/javascript", "app.css": "text/css", "docs.js": "text/javascript",
          "recording.js": "text/javascript"}

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def page() -> str:
    return (WEB / "index.html").read_text(encoding="utf-8")


@router.get("/static/{name}")
def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(404, "no such file")
    return FileResponse(WEB / name, media_type=ASSETS[name])
