"""The same small MCP server with each SDK, protected by ``MCPShield``.

Tools: ``whoami`` (any token with ``read``) answers what the SDK's own ``get_access_token()``
sees; ``delete_item`` needs ``write`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oauth_shield.mcp import MCPShield


def _tools(server: Any, shield: MCPShield, get_access_token: Callable[[], Any]) -> None:
    """The same two tools on either SDK's server: one anyone may call, one needing "write"."""

    @server.tool()
    async def whoami() -> str:
        token = get_access_token()
        assert token is not None
        return f"{token.client_id}|{token.subject}|{' '.join(token.scopes)}|{token.token}"

    @shield.tool(server, "write")
    async def delete_item(item_id: str) -> str:
        return f"deleted {item_id}"


def mcp_sdk_app(shield: MCPShield) -> Any:
    from mcp.server.auth.middleware.auth_context import get_access_token
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("items")
    _tools(server, shield, get_access_token)
    return shield.protect(server.streamable_http_app())


def fastmcp_app(shield: MCPShield) -> Any:
    from fastmcp import FastMCP
    from fastmcp.server.dependencies import get_access_token

    server = FastMCP("items")
    _tools(server, shield, get_access_token)
    return shield.protect(server.http_app(path="/mcp"))


SDKS = {"mcp": mcp_sdk_app, "fastmcp": fastmcp_app}
