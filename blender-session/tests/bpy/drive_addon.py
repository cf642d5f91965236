"""Drives rpb's Blender addon (assets/rpb_mcp.py) inside Blender as a Python module (PyPI bpy).

Usage: python drive_addon.py ADDON_PATH WORK_DIR

Calls the addon's command handlers the way its socket server does, renders one small Cycles
frame on the CPU and prints one JSON document with what each step returned, for the Rust test
(blender-session/tests/it/bpy_versions.rs) to check. Any exception is a failure (exit 1).
"""

import importlib.util
import json
import os
import sys


def main():
    addon_path, work = sys.argv[1], sys.argv[2]
    import bpy

    spec = importlib.util.spec_from_file_location("rpb_mcp", addon_path)
    addon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(addon)
    out = {"blender_version": bpy.app.version_string.split(" ")[0]}
    out["ping"] = addon.cmd_ping()
    out["addon_info"] = addon.cmd_get_addon_info()
    out["scene_before"] = addon.cmd_get_scene_info()
    out["execute"] = addon.cmd_execute_code(
        "import bpy\n"
        "bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0, 0, 0))\n"
        "bpy.context.active_object.name = 'RpbCube'\n"
        "print('objects', len(bpy.data.objects))\n"
    )
    out["object"] = addon.cmd_get_object_info("RpbCube")
    saved = os.path.join(work, "scene.blend")
    out["save"] = addon.cmd_save_blend(saved)
    addon.cmd_execute_code("import bpy\nbpy.data.objects.remove(bpy.data.objects['RpbCube'])\n")
    out["open"] = addon.cmd_open_blend(saved, load_ui=False)
    out["scene_after_open"] = addon.cmd_get_scene_info()
    out["compute"] = addon.compute_report()
    try:
        addon.cmd_execute_code("raise ValueError('on purpose')")
        out["error"] = None
    except Exception as error:  # the addon reports a failure to its client as an error
        out["error"] = str(error)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 2
    scene.render.resolution_x, scene.render.resolution_y = 32, 24
    scene.render.resolution_percentage = 100
    scene.render.filepath = os.path.join(work, "frame.png")
    scene.render.image_settings.file_format = "PNG"
    bpy.ops.render.render(write_still=True)
    out["render"] = {
        "path": scene.render.filepath,
        "size": os.path.getsize(scene.render.filepath),
    }
    out["eevee_engine"] = addon.eevee_engine() if hasattr(addon, "eevee_engine") else None
    print("RPB-RESULT " + json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
