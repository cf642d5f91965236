# rpb render driver: runs inside `blender -b FILE --python rpb_render.py -- JOB_DIR`.
#
# Reads JOB_DIR/spec.json, applies it to the scene (engine, samples, resolution, format, Cycles
# device, denoising, camera, scene, view layer), then renders each frame of the spec that has
# no done record yet, one `render.render(write_still=True)` per frame, into JOB_DIR/out. A frame
# counts as done only when Blender logged `Saved:` for its path, no error was logged while it
# rendered, and the file exists, is not empty and decodes as an image of the expected size;
# then its record (path, SHA-256, size, seconds, samples) is written atomically to
# JOB_DIR/frames/<frame>.json and appended to JOB_DIR/events.jsonl. A failed frame is retried
# up to spec["retries"] times; the attempt count is kept on disk, so a crash counts too.
# Frames with a done record whose file still matches are skipped, never overwritten.
#
# A render farm task (session.sh farm-task) renders only its chunk's frames
# (RPB_RENDER_FRAMES), logs to its own file (RPB_RENDER_LOG), writes its own outcome
# (RPB_RENDER_RESULT) and names its node in each done record (RPB_RENDER_NODE).
#
# The job's outcome goes to JOB_DIR/result.json: done, failed (with each frame's reason) or
# invalid (the spec does not fit the file: no such camera, scene, engine...). Lines starting
# with "rpb-render:" in Blender's log are this driver's.

import ctypes
import hashlib
import json
import os
import sys
import time
import traceback

import bpy

ERROR_MARKERS = (
    "Error:",
    "ERROR ",
    "Render error",
    "cannot save",
    "CUDA error",
    "OPTIX_ERROR",
    "HIP error",
    "out of memory",
    "Out of memory",
    "System is out of GPU memory",
)
EXTENSIONS = {"PNG": "png", "OPEN_EXR": "exr", "JPEG": "jpg"}


def say(message):
    sys.stdout.write(f"rpb-render: {message}\n")
    sys.stdout.flush()


def flush_all():
    """Flushes Python's and C's stdout, so Blender's own lines are in the log file now."""
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


def write_atomically(path, text):
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def append_event(job_dir, record):
    line = json.dumps(record, sort_keys=True) + "\n"
    # One small O_APPEND write per record: readers never see half a line mixed with another.
    fd = os.open(os.path.join(job_dir, "events.jsonl"), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Invalid(Exception):
    """The spec does not fit the file."""


def choose_engine(scene, name):
    candidates = {
        "cycles": ["CYCLES"],
        # EEVEE's identifier changed: BLENDER_EEVEE (<= 4.1, and 5.x), BLENDER_EEVEE_NEXT (4.2-4.5).
        "eevee": ["BLENDER_EEVEE_NEXT", "BLENDER_EEVEE"],
        "workbench": ["BLENDER_WORKBENCH"],
    }[name]
    for identifier in candidates:
        try:
            scene.render.engine = identifier
            return identifier
        except TypeError:
            continue
    raise Invalid(f"this Blender has no {name} engine (tried {', '.join(candidates)})")


def cycles_has_oidn():
    """Whether Cycles was built with OpenImageDenoise (Debian's Blender is not)."""
    try:
        import _cycles  # noqa: PLC0415 - Cycles' own module, present once the addon loaded
    except ImportError:
        return True
    return bool(getattr(_cycles, "with_openimagedenoise", True))


def refresh_devices(preferences):
    if hasattr(preferences, "refresh_devices"):
        preferences.refresh_devices()
    else:
        preferences.get_devices()


def choose_device(scene, wanted):
    """Points Cycles at the wanted backend (or the best one found); returns its name."""
    if wanted == "cpu":
        scene.cycles.device = "CPU"
        return "CPU"
    addon = bpy.context.preferences.addons.get("cycles")
    if addon is None:
        if wanted != "auto":
            raise Invalid("the Cycles addon is not enabled: no GPU rendering")
        scene.cycles.device = "CPU"
        return "CPU"
    preferences = addon.preferences
    backends = ["OPTIX", "CUDA", "HIP", "ONEAPI"] if wanted == "auto" else [wanted.upper()]
    tried = []
    for backend in backends:
        try:
            preferences.compute_device_type = backend
            refresh_devices(preferences)
        except (TypeError, ValueError, RuntimeError) as error:
            tried.append(f"{backend}: {error}")
            continue
        gpus = [device for device in preferences.devices if device.type == backend]
        if not gpus:
            tried.append(f"{backend}: no device")
            continue
        for device in preferences.devices:
            device.use = device.type == backend
        scene.cycles.device = "GPU"
        return backend
    if wanted != "auto":
        raise Invalid(f"no {wanted.upper()} device on this machine ({'; '.join(tried)}); use --device cpu or auto")
    scene.cycles.device = "CPU"
    say("no GPU found, Cycles renders on the CPU (" + "; ".join(tried) + ")")
    return "CPU"


def apply_spec(spec):
    """Applies the spec to the scene; returns (scene, view layer name, facts)."""
    if spec.get("scene"):
        scene = bpy.data.scenes.get(spec["scene"])
        if scene is None:
            names = ", ".join(s.name for s in bpy.data.scenes)
            raise Invalid(f"no scene named {spec['scene']!r} in the file (scenes: {names})")
    else:
        scene = bpy.context.scene
    layer = spec.get("view_layer") or ""
    if layer and scene.view_layers.get(layer) is None:
        names = ", ".join(v.name for v in scene.view_layers)
        raise Invalid(f"no view layer named {layer!r} in scene {scene.name!r} (view layers: {names})")
    if spec.get("camera"):
        camera = bpy.data.objects.get(spec["camera"])
        if camera is None or camera.type != "CAMERA":
            names = ", ".join(o.name for o in bpy.data.objects if o.type == "CAMERA")
            raise Invalid(f"no camera named {spec['camera']!r} in the file (cameras: {names or 'none'})")
        scene.camera = camera
    if scene.camera is None:
        raise Invalid(f"scene {scene.name!r} has no active camera: pass a camera")
    if spec.get("engine"):
        choose_engine(scene, spec["engine"])
    engine = scene.render.engine
    render = scene.render
    if spec.get("resolution"):
        render.resolution_x, render.resolution_y = spec["resolution"]
    if spec.get("percent"):
        render.resolution_percentage = spec["percent"]
    fmt = spec.get("format") or "PNG"
    render.image_settings.file_format = fmt
    if fmt == "OPEN_EXR":
        render.image_settings.color_depth = "16"
    render.use_file_extension = True
    render.use_overwrite = True
    render.use_placeholder = False
    device = "CPU"
    samples = None
    notes = []
    if engine == "CYCLES":
        device = choose_device(scene, spec.get("device") or "auto")
        if spec.get("samples"):
            scene.cycles.samples = spec["samples"]
        if spec.get("denoise") is not None:
            scene.cycles.use_denoising = bool(spec["denoise"])
        has_oidn = cycles_has_oidn()
        if scene.cycles.use_denoising and scene.cycles.denoiser != "OPTIX" and not has_oidn:
            if spec.get("denoise"):
                raise Invalid(
                    "this Blender was built without OpenImageDenoise, so it cannot denoise: "
                    "pass --denoise off, or use an official Blender build"
                )
            # The file's default asks for a denoiser this build lacks: Blender would log an
            # error on every frame and save it undenoised. Say so once instead.
            scene.cycles.use_denoising = False
            notes.append("denoising is off: this Blender was built without OpenImageDenoise")
        samples = scene.cycles.samples
    elif (spec.get("device") or "auto") != "auto":
        raise Invalid(
            f"--device {spec['device']} is for Cycles, and the file renders with {engine}: "
            "pass --engine cycles, or leave the device out"
        )
    elif engine.startswith("BLENDER_EEVEE"):
        device = "OpenGL (EEVEE)"
        if spec.get("samples"):
            scene.eevee.taa_render_samples = spec["samples"]
        samples = scene.eevee.taa_render_samples
    else:
        device = "OpenGL (Workbench)"
    width = render.resolution_x * render.resolution_percentage // 100
    height = render.resolution_y * render.resolution_percentage // 100
    # A cropped border renders a smaller image: its size is not checked.
    expected = None if (render.use_border and render.use_crop_to_border) else [width, height]
    facts = {
        "blender_version": bpy.app.version_string,
        "engine": engine,
        "device": device,
        "samples": samples,
        "scene": scene.name,
        "camera": scene.camera.name,
        "view_layer": layer or None,
        "size": [width, height],
        "format": fmt,
        "notes": notes,
    }
    return scene, layer, expected, facts


def done_record(job_dir, frame):
    path = os.path.join(job_dir, "frames", f"{frame}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
        output = os.path.join(job_dir, record["file"])
        if os.path.getsize(output) == record["bytes"] and sha256_of(output) == record["sha256"]:
            return record
    except (OSError, ValueError, KeyError):
        pass
    return None


def read_attempts(job_dir, frame):
    try:
        with open(os.path.join(job_dir, "frames", f"{frame}.attempts"), encoding="utf-8") as handle:
            return int(handle.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def log_problem(segment, saved_path):
    """The first error Blender logged in this frame's part of the log, or a missing Saved line."""
    saved = False
    for line in segment.splitlines():
        text = line.strip()
        if text.startswith("rpb-render:"):
            continue
        if f"Saved: '{saved_path}'" in text:
            saved = True
        for marker in ERROR_MARKERS:
            if marker in text:
                return text
    if not saved:
        return f"Blender did not report saving {saved_path}"
    return None


def verify_image(path, expected):
    if not os.path.isfile(path):
        return f"{path} was not written"
    if os.path.getsize(path) == 0:
        return f"{path} is empty"
    image = bpy.data.images.load(path, check_existing=False)
    try:
        size = list(image.size)
    finally:
        bpy.data.images.remove(image)
    if size == [0, 0]:
        return f"{path} does not decode as an image"
    if expected is not None and size != expected:
        return f"{path} is {size[0]}x{size[1]}, expected {expected[0]}x{expected[1]}"
    return None


def log_size(log_path):
    try:
        return os.path.getsize(log_path)
    except OSError:
        return 0


def read_from(log_path, offset):
    with open(log_path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace")


def log_path_of(job_dir):
    # A farm task logs on its own (several Blenders render one job at once).
    return os.environ.get("RPB_RENDER_LOG") or os.path.join(job_dir, "blender.log")


def result_path_of(job_dir):
    return os.environ.get("RPB_RENDER_RESULT") or os.path.join(job_dir, "result.json")


def frames_of(spec):
    """The spec's frames, or only those of this farm task's chunk (RPB_RENDER_FRAMES=1,2,3)."""
    chunk = os.environ.get("RPB_RENDER_FRAMES", "").strip()
    if not chunk:
        return list(spec["frames"])
    wanted = {int(part) for part in chunk.split(",") if part.strip()}
    return [frame for frame in spec["frames"] if frame in wanted]


def render_frame(job_dir, spec, scene, layer, expected, facts, frame, attempt):
    ext = EXTENSIONS[facts["format"]]
    relative = f"out/frame_{frame:04d}.{ext}"
    output = os.path.join(job_dir, relative)
    log_path = log_path_of(job_dir)
    # Whatever is there is not done (no record): a leftover of a crash, never a verified frame.
    if os.path.exists(output):
        os.remove(output)
    flush_all()
    offset = log_size(log_path)
    say(f"frame {frame} start attempt {attempt}")
    scene.frame_set(frame)
    scene.render.filepath = output
    started = time.monotonic()
    problem = None
    try:
        result = bpy.ops.render.render(write_still=True, scene=scene.name, layer=layer)
        if "FINISHED" not in result:
            problem = f"the render was {', '.join(sorted(result)).lower()}"
    except RuntimeError as error:
        problem = str(error).strip().splitlines()[-1] if str(error).strip() else "render failed"
    seconds = time.monotonic() - started
    rendered_at = time.time()
    flush_all()
    if problem is None:
        problem = log_problem(read_from(log_path, offset), output)
    if problem is None:
        problem = verify_image(output, expected)
    if problem is not None:
        return None, problem
    size = os.path.getsize(output)
    record = {
        "event": "done",
        "frame": frame,
        "file": relative,
        "sha256": sha256_of(output),
        "bytes": size,
        "seconds": round(seconds, 3),
        "samples": facts["samples"],
        "attempt": attempt,
        "rendered_at": rendered_at,
        "at": time.time(),
    }
    node = os.environ.get("RPB_RENDER_NODE", "")
    if node:
        record["node"] = node
    write_atomically(os.path.join(job_dir, "frames", f"{frame}.json"), json.dumps(record))
    return record, None


def main():
    job_dir = sys.argv[sys.argv.index("--") + 1]
    with open(os.path.join(job_dir, "spec.json"), encoding="utf-8") as handle:
        spec = json.load(handle)
    os.makedirs(os.path.join(job_dir, "out"), exist_ok=True)
    os.makedirs(os.path.join(job_dir, "frames"), exist_ok=True)
    try:
        scene, layer, expected, facts = apply_spec(spec)
    except Invalid as error:
        say(f"invalid: {error}")
        append_event(job_dir, {"event": "invalid", "reason": str(error)})
        write_atomically(
            result_path_of(job_dir),
            json.dumps({"state": "invalid", "reason": str(error), "at": time.time()}),
        )
        return
    append_event(job_dir, {"event": "accepted", **facts, "at": time.time()})
    say("accepted " + json.dumps(facts, sort_keys=True))
    retries = int(spec.get("retries", 2))
    crash = os.environ.get("RPB_RENDER_LAST_CRASH", "")
    failed = {}
    done = 0
    for frame in frames_of(spec):
        if done_record(job_dir, frame) is not None:
            say(f"frame {frame} skipped: already rendered and verified")
            append_event(job_dir, {"event": "skipped", "frame": frame})
            done += 1
            continue
        attempts = read_attempts(job_dir, frame)
        reason = f"Blender ended while rendering it ({crash})" if attempts and crash else None
        record = None
        tried = False
        while attempts <= retries:
            tried = True
            attempts += 1
            write_atomically(os.path.join(job_dir, "frames", f"{frame}.attempts"), str(attempts))
            record, reason = render_frame(job_dir, spec, scene, layer, expected, facts, frame, attempts)
            if record is not None:
                break
            last = attempts > retries
            say(f"frame {frame} failed attempt {attempts}: {reason}")
            append_event(
                job_dir,
                {"event": "failed", "frame": frame, "attempt": attempts, "reason": reason, "final": last},
            )
        if record is None:
            reason = reason or "no attempts left"
            if not tried:
                # A crash used the last attempt: say so once.
                say(f"frame {frame} failed: {reason}")
                append_event(
                    job_dir,
                    {"event": "failed", "frame": frame, "attempt": attempts, "reason": reason, "final": True},
                )
            failed[frame] = reason
            continue
        done += 1
        append_event(job_dir, record)
        say(f"frame {frame} done " + json.dumps(record, sort_keys=True))
    state = "failed" if failed else "done"
    write_atomically(
        result_path_of(job_dir),
        json.dumps(
            {
                "state": state,
                "done": done,
                "failed": [{"frame": f, "reason": r} for f, r in sorted(failed.items())],
                "at": time.time(),
            }
        ),
    )
    say(f"finished: {done} done, {len(failed)} failed")


try:
    main()
except Exception:  # noqa: BLE001 - the runner reads the exit code; the log gets the traceback
    traceback.print_exc()
    flush_all()
    sys.exit(3)
