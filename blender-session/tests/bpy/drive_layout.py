"""Loads both addons from the layout setup.sh makes, in Blender as a Python module (PyPI bpy).

    python drive_layout.py RPB_HOME

RPB_HOME is a folder setup.sh filled (blender-scripts/addons holds rpb_mcp.py and the upstream
blender_mcp.py). Blender finds them as a session finds them: BLENDER_USER_SCRIPTS, then
addon_utils.enable, upstream first. Module mode has no window, so neither server listens; the
upstream addon's command handlers are run directly instead: the handshake, scene items, the
world-state snapshot, scene info and code. Prints one JSON line.
"""

import json
import os
import sys

home = sys.argv[1]
os.environ["BLENDER_USER_SCRIPTS"] = os.path.join(home, "blender-scripts")
os.environ["RPB_MCP_PORT"] = "19876"
os.environ["RPB_MCP_ADDON"] = "upstream"
os.environ["BLENDERMCP_NO_UPDATE_CHECK"] = "1"

import bpy  # noqa: E402  (bpy first: it puts Blender's own modules on the path)
import addon_utils  # noqa: E402

enabled = {}
for name in ("blender_mcp", "rpb_mcp"):
    module = addon_utils.enable(name, default_set=True, handle_error=None)
    enabled[name] = module is not None and os.path.dirname(module.__file__).startswith(home)

upstream = sys.modules["blender_mcp"]
rpb = sys.modules["rpb_mcp"]
rpb.point_upstream_at_mcp_port()
scene = bpy.context.scene
server = upstream.BlenderMCPServer(port=scene.blendermcp_port)


def run(command, **params):
    return server._execute_command_internal({"type": command, "params": params})


report = {
    "blender": bpy.app.version_string,
    "enabled": enabled,
    "port": scene.blendermcp_port,
    "auto_start": scene.blendermcp_auto_start_server,
    "addon_info": run("get_addon_info"),
    "list_scene_items": run("list_scene_items", query="Cu"),
    "snapshot": run("get_world_state_snapshot"),
    "scene_info": run("get_scene_info"),
    "execute_code": run("execute_code", code="import bpy\nprint(len(bpy.data.objects))"),
    "mcp_port_report": rpb.mcp_port_report(),
}
for name in ("rpb_mcp", "blender_mcp"):
    addon_utils.disable(name, default_set=True)
print("RPB_LAYOUT " + json.dumps(report, default=str))
