"""Drives the real blender-mcp MCP server over MCP stdio with the MCP SDK's own client.

    python drive_server.py SERVER [ARG...]

Starts SERVER (the pinned mcp-for-blender's console script) with this process's environment
(BLENDER_HOST and BLENDER_PORT point it at Blender through rpb's tunnel), runs the MCP
handshake, lists the tools and calls the ones that need no account or internet, plus two that
do. Prints one JSON object: what the server said, per call, with images summarised (type, size,
whether they are PNG or JPEG). Every call is bounded, so a hang shows up as a timeout entry.
"""

import asyncio
import base64
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

CALL_LIMIT = 120


def summarise(content):
    if content.type == "text":
        return {"type": "text", "text": content.text}
    if content.type == "image":
        data = base64.b64decode(content.data)
        return {
            "type": "image",
            "mime_type": content.mimeType,
            "bytes": len(data),
            "png": data.startswith(b"\x89PNG\r\n\x1a\n"),
            "jpeg": data.startswith(b"\xff\xd8\xff"),
        }
    if content.type == "resource_link":
        return {"type": "resource_link", "name": content.name}
    return {"type": content.type}


async def main():
    server = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:], env=dict(os.environ))
    out = {}
    async with stdio_client(server) as (read, write):
        async with ClientSession(read, write) as session:
            init = await asyncio.wait_for(session.initialize(), CALL_LIMIT)
            out["server"] = {"name": init.serverInfo.name, "version": init.serverInfo.version}
            # App-only tools (search_mentions, which lists scene items for @-mentions) are
            # callable but hidden from this list.
            tools = await asyncio.wait_for(session.list_tools(), CALL_LIMIT)
            out["tools"] = sorted(tool.name for tool in tools.tools)

            async def call(name, arguments):
                try:
                    result = await asyncio.wait_for(session.call_tool(name, arguments), CALL_LIMIT)
                except asyncio.TimeoutError:
                    return {"timeout": CALL_LIMIT}
                return {
                    "is_error": bool(result.isError),
                    "content": [summarise(content) for content in result.content],
                    "structured": result.structuredContent,
                }

            out["get_addon_status"] = await call("get_addon_status", {})
            out["execute_blender_code"] = await call(
                "execute_blender_code",
                {
                    "code": "import bpy\n"
                    "bpy.ops.mesh.primitive_uv_sphere_add(location=(0, 0, 3))\n"
                    "bpy.context.active_object.name = 'McpSphere'\n"
                    "print('objects', len(bpy.data.objects))\n"
                },
            )
            out["get_scene_info"] = await call(
                "get_scene_info", {"fields": ["location", "size", "details"], "query": "Mcp"}
            )
            out["search_mentions"] = await call("search_mentions", {"query": "McpSph"})
            out["look"] = await call("look", {"max_size": 256})
            out["search_assets"] = await call("search_assets", {"source": "polyhaven", "query": "wood"})
            out["generate_3d"] = await call("generate_3d", {"prompt": "a small wooden chair"})
    print(json.dumps(out))


asyncio.run(main())
