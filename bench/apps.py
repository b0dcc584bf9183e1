"""The benchmark's APIs: one view, served twice, once protected and once not.

Configured from OAUTH_SHIELD_* variables like the examples. Served by bench/throughput.py.
"""

import os

import flask_oauth_shield
import quart_oauth_shield
from flask import Flask
from quart import Quart

CONFIG = {k: v for k, v in os.environ.items() if k.startswith("OAUTH_SHIELD_")}
BODY = {"items": ["a", "b", "c"]}

quart_app = Quart("bench-quart")
quart_app.config.from_mapping(CONFIG)
quart_shield = quart_oauth_shield.Shield(quart_app)


async def quart_items() -> dict[str, list[str]]:
    return BODY


quart_app.add_url_rule("/unprotected", "unprotected", quart_items)
quart_app.add_url_rule("/protected", "protected", quart_shield.require("read")(quart_items))

flask_app = Flask("bench-flask")
flask_app.config.from_mapping(CONFIG)
flask_shield = flask_oauth_shield.Shield(flask_app)


def flask_items() -> dict[str, list[str]]:
    return BODY


flask_app.add_url_rule("/unprotected", "unprotected", flask_items)
flask_app.add_url_rule("/protected", "protected", flask_shield.require("read")(flask_items))
