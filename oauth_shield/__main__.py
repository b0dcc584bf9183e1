"""``python -m oauth_shield``: small tools.

python -m oauth_shield apikey new [--scopes read write] [--expires 2027-06-30]
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime

from ._errors import ConfigurationError
from .apikeys import as_utc, new_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m oauth_shield")
    commands = parser.add_subparsers(dest="command", required=True)
    apikey = commands.add_parser("apikey", help="API keys").add_subparsers(
        dest="action", required=True
    )
    new = apikey.add_parser("new", help="make a new API key; print it once, with the line to store")
    new.add_argument("--scopes", nargs="*", default=[], help="scopes the key grants")
    new.add_argument("--expires", help="expiry date or time, ISO 8601 (UTC if no offset)")
    args = parser.parse_args(argv)

    expires = None
    if args.expires:
        try:
            expires = as_utc(datetime.fromisoformat(args.expires))
        except ValueError:
            parser.error(f"--expires: not an ISO 8601 date or time: {args.expires!r}")
    try:
        key, stored = new_key(args.scopes, expires)
    except ConfigurationError as error:
        parser.error(f"--scopes: {error}")
    print("API key (shown once; hand it to its client and do not keep it):")
    print(f"  {key}")
    print("Line to store, in OAUTH_SHIELD_API_KEYS or the file OAUTH_SHIELD_API_KEYS_FILE names:")
    print(f"  {stored.line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
