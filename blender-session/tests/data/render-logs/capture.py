"""Builds a tiny animated scene and renders frames the way rpb's pod-side driver does.

Runs inside Blender or with Blender as a Python module (PyPI `bpy`):

    blender -b --factory-startup --python capture.py -- ARGS   # Debian Blender 3.4
    python capture.py ARGS                                    # venv with bpy 4.5 / 5.0

ARGS:
    --engine CYCLES|BLENDER_EEVEE|BLENDER_EEVEE_NEXT|BLENDER_WORKBENCH   (default CYCLES)
    --frames 1,2                 frames to render, one `render(write_still=True)` each
    --out PATTERN                output path with one %d-style field, e.g. /tmp/rpb-logs/o/frame_%04d
    --samples N                  render samples (Cycles, EEVEE) (default 4)
    --camera NAME                set scene.camera to the object NAME (or to None if missing)
    --scene NAME                 pass scene=NAME to bpy.ops.render.render
    --animation                  instead of the per-frame loop, one render(animation=True)
                                 over --frames' min..max with use_overwrite=False
    --save-blend PATH            only save the scene to PATH (for a CLI `blender -b PATH ...` run)
    --clog CATEGORIES            bpy 5.x module only: log these categories (e.g. `render`) at INFO,
                                 the module-mode stand-in for the CLI's `--log render` (5.x logs
                                 progress, `Time:` and skipped frames at INFO; its default is WARNING)

Every line this script prints starts with `capture:`; everything else in a log is Blender's.
"""

import sys
import traceback

import bpy


def parse_args():
    argv = sys.argv
    argv = argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]
    opts = {
        "engine": "CYCLES",
        "frames": "1,2",
        "out": "/tmp/rpb-logs/out/frame_%04d",
        "samples": "4",
        "camera": None,
        "scene": None,
        "animation": False,
        "save_blend": None,
        "clog": None,
    }
    i = 0
    while i < len(argv):
        key = argv[i].lstrip("-").replace("-", "_")
        if key == "animation":
            opts[key] = True
            i += 1
            continue
        opts[key] = argv[i + 1]
        i += 2
    opts["frames"] = [int(f) for f in opts["frames"].split(",")]
    opts["samples"] = int(opts["samples"])
    return opts


def clog_include(categories):
    """Calls Blender's internal `CLG_type_filter_include(...)`, what `--log CATEGORIES` does.

    The bpy module has no command line, and the function is not exported, so find it in the
    module's symbol table (`nm`) and call it at its loaded address with ctypes. Like `--log`,
    this raises the matching categories to INFO; the others stay at WARNING.
    """
    import ctypes
    import subprocess

    so_path = base = None
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            if len(parts) >= 6 and parts[5].endswith("/bpy/__init__.so") and int(parts[2], 16) == 0:
                so_path, base = parts[5], int(parts[0].split("-")[0], 16)
                break
    symbols = subprocess.run(["nm", so_path], capture_output=True, text=True, check=True).stdout
    for line in symbols.splitlines():
        if line.endswith(" _Z23CLG_type_filter_includePKci"):
            address = int(line.split()[0], 16)
            break
    else:
        raise RuntimeError("CLG_type_filter_include not found in " + so_path)
    include = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_int)(base + address)
    for category in categories.split(","):
        include(category.encode(), len(category))
    print("capture: logging categories", categories, "at INFO (as --log)", flush=True)


def build_scene(engine, samples):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene

    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(0.0, 0.0, 0.0))
    cube = bpy.context.active_object
    cube.keyframe_insert(data_path="location", frame=1)
    cube.location = (1.5, 0.0, 0.5)
    cube.keyframe_insert(data_path="location", frame=4)

    cam_data = bpy.data.cameras.new("Camera")
    cam = bpy.data.objects.new("Camera", cam_data)
    scene.collection.objects.link(cam)
    cam.location = (6.0, -6.0, 4.0)
    cam.rotation_euler = (1.1, 0.0, 0.785)
    scene.camera = cam

    light_data = bpy.data.lights.new("Light", "SUN")
    light = bpy.data.objects.new("Light", light_data)
    scene.collection.objects.link(light)
    light.rotation_euler = (0.6, 0.2, 0.0)

    scene.frame_start = 1
    scene.frame_end = 4
    render = scene.render
    render.resolution_x = 64
    render.resolution_y = 48
    render.resolution_percentage = 100
    render.image_settings.file_format = "PNG"
    render.engine = engine
    if engine == "CYCLES":
        scene.cycles.device = "CPU"
        scene.cycles.samples = samples
        scene.cycles.use_denoising = False
    elif engine.startswith("BLENDER_EEVEE"):
        scene.eevee.taa_render_samples = samples
    return scene


def main():
    opts = parse_args()
    print("capture: blender", bpy.app.version_string, "engine", opts["engine"], flush=True)
    if opts["clog"]:
        clog_include(opts["clog"])
    scene = build_scene(opts["engine"], opts["samples"])
    if opts["save_blend"]:
        bpy.ops.wm.save_as_mainfile(filepath=opts["save_blend"])
        print("capture: saved blend", opts["save_blend"], flush=True)
        return
    if opts["camera"] is not None:
        scene.camera = bpy.data.objects.get(opts["camera"])
        print("capture: scene.camera =", scene.camera, flush=True)
    kwargs = {"write_still": True}
    if opts["scene"] is not None:
        kwargs["scene"] = opts["scene"]

    if opts["animation"]:
        scene.frame_start = min(opts["frames"])
        scene.frame_end = max(opts["frames"])
        scene.render.filepath = opts["out"].split("%")[0]
        scene.render.use_overwrite = False
        scene.render.use_placeholder = True
        try:
            result = bpy.ops.render.render(animation=True)
            print("capture: render(animation=True) returned", result, flush=True)
        except Exception as exc:  # noqa: BLE001 - recording what Blender does
            print("capture: render(animation=True) raised", type(exc).__name__, repr(str(exc)), flush=True)
        return

    for frame in opts["frames"]:
        scene.frame_set(frame)
        scene.render.filepath = opts["out"] % frame
        print("capture: frame", frame, "filepath", scene.render.filepath, flush=True)
        try:
            result = bpy.ops.render.render(**kwargs)
            print("capture: frame", frame, "render(write_still=True) returned", result, flush=True)
        except Exception as exc:  # noqa: BLE001 - recording what Blender does
            print(
                "capture: frame", frame, "render(write_still=True) raised",
                type(exc).__name__, repr(str(exc)), flush=True,
            )
            traceback.print_exc()
            sys.stderr.flush()


main()
