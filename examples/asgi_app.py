"""A Starlette API protected by the framework-free ASGI middleware.

    OAUTH_SHIELD_ISSUER=https://as.example.com OAUTH_SHIELD_AUDIENCE=https://api.example.com \
        uvicorn examples.asgi_app:app
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from oauth_shield import TokenValidator
from oauth_shield.asgi import BearerAuthMiddleware


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})  # not covered by any prefix below


async def items(request: Request) -> JSONResponse:
    token = request.auth  # the AccessToken, also at request.state.access_token
    return JSONResponse({"sub": token.subject, "client": token.client_id, "items": ["a", "b"]})


async def reindex(request: Request) -> JSONResponse:
    return JSONResponse({"status": "started"})


routes = [
    Route("/health", health),
    Route("/items", items),
    Route("/admin/reindex", reindex, methods=["POST"]),
]
app = BearerAuthMiddleware(
    Starlette(routes=routes),
    validator=TokenValidator.from_env(),
    scopes={"/items": ["read"], "/admin": ["admin"]},
    realm="example-api",
)
