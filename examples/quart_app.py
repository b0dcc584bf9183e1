"""A Quart API protected by oauth_shield.

    OAUTH_SHIELD_ISSUER=https://as.example.com OAUTH_SHIELD_AUDIENCE=https://api.example.com \
        uvicorn examples.quart_app:app
"""

import os

from quart import Quart
from quart_oauth_shield import Shield, current_token

app = Quart(__name__)
app.config.from_mapping({k: v for k, v in os.environ.items() if k.startswith("OAUTH_SHIELD_")})
shield = Shield(app, realm="example-api")


@app.get("/health")
async def health() -> dict[str, bool]:
    return {"ok": True}  # not protected


@app.get("/items")
@shield.require("read")
async def items() -> dict[str, object]:
    return {"sub": current_token.subject, "client": current_token.client_id, "items": ["a", "b"]}


@app.post("/admin/reindex")
@shield.require("admin")
async def reindex() -> dict[str, str]:
    return {"status": "started"}
