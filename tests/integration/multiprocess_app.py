"""The app ``test_multiprocess`` runs in four uvicorn workers: it says which worker answered."""

import os

from quart import Quart
from quart_oauth_shield import Shield, current_token

app = Quart(__name__)
app.config.from_mapping({k: v for k, v in os.environ.items() if k.startswith("OAUTH_SHIELD_")})
shield = Shield(app)


@app.get("/whoami")
@shield.require("read")
async def whoami() -> dict[str, object]:
    return {"pid": os.getpid(), "sub": current_token.subject}
