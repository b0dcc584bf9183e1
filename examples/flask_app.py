"""A Flask API protected by oauth_shield.

    OAUTH_SHIELD_ISSUER=https://as.example.com OAUTH_SHIELD_AUDIENCE=https://api.example.com \
        flask --app examples.flask_app run
"""

import os

from flask import Flask
from flask_oauth_shield import Shield, current_token

app = Flask(__name__)
app.config.from_mapping({k: v for k, v in os.environ.items() if k.startswith("OAUTH_SHIELD_")})
shield = Shield(app, realm="example-api")


@app.get("/health")
def health() -> dict[str, bool]:
    return {"ok": True}  # not protected


@app.get("/items")
@shield.require("read")
def items() -> dict[str, object]:
    return {"sub": current_token.subject, "client": current_token.client_id, "items": ["a", "b"]}


@app.post("/admin/reindex")
@shield.require("admin")
def reindex() -> dict[str, str]:
    return {"status": "started"}
