"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), that work offline.

FastAPI's own pages load their scripts from a CDN and are blank without the internet; these load
Swagger UI and ReDoc from the `fastapi-offline` package's copies, served under `ASSETS`. A
Content-Security-Policy keeps the pages to this origin: ReDoc's footer would fetch its maker's logo
from the internet otherwise.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
# where the package keeps Swagger UI's bundle and stylesheet, ReDoc's standalone script, a favicon
_ASSET_FILES = Path(fastapi_offline.__file__).parent / "static"
# the inline scripts and styles are the pages' own (Swagger UI's setup call, ReDoc's styled
# components); ReDoc's search runs in a worker made from a blob
_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


def install(app: FastAPI) -> None:
    """Serve the pages on an app made with `docs_url=None, redoc_url=None`."""
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"
    app.mount(ASSETS, StaticFiles(directory=_ASSET_FILES), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return _own_origin_only(
            get_swagger_ui_html(
                openapi_url=openapi_url,
                title=f"{app.title} - Swagger UI",
                oauth2_redirect_url=oauth2_redirect,
                swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                swagger_css_url=f"{ASSETS}/swagger-ui.css",
                swagger_favicon_url=f"{ASSETS}/favicon.png",
            )
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return _own_origin_only(
            get_redoc_html(
                openapi_url=openapi_url,
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                redoc_favicon_url=f"{ASSETS}/favicon.png",
                with_google_fonts=False,
            )
        )


def _own_origin_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _POLICY
    return page
