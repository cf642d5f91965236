"""rpb's Blender addon: rpb's command server, and Cycles GPU setup.

Serves rpb's commands (save, open, ping, scene, execute_code, compute report) on 127.0.0.1 at
rpb's control port (RPB_CONTROL_PORT, default 9877), in the blender-mcp wire format:
unframed JSON objects, {"type": ..., "params": {...}} in, {"status": "success", "result": ...}
or {"status": "error", "message": ...} out (each reply followed by a newline, which JSON
readers skip), on persistent connections, several clients at once. Socket I/O runs in
background threads; every command runs on Blender's main thread, one at a time, through a
persistent timer that drains a queue.

The MCP port (RPB_MCP_PORT, default 9876) belongs to the AI client's server. With
RPB_MCP_ADDON=upstream (the default) the upstream blender-mcp addon serves it, and this addon
only points it at that port (in every scene, and again after each file load). With
RPB_MCP_ADDON=rpb (pods without internet) this addon serves the MCP port too, with the same
commands.

At startup it points Cycles at the best GPU backend it finds (OptiX, then CUDA, then HIP, else
the CPU) and reports the choice through get_addon_info.

Written for rpb; it shares only the wire protocol with the upstream blender-mcp addon.
"""

import contextlib
import inspect
import io
import json
import os
import queue
import re
import socket
import sys
import threading
import time
import traceback

import bpy

bl_info = {
    "name": "rpb MCP server",
    "author": "rpb developers",
    "version": (0, 1, 0),
    "blender": (3, 0, 0),
    "location": "runs in the background",
    "description": "Serves the blender-mcp protocol on 127.0.0.1 for rpb and MCP clients",
    "category": "System",
}

ADDON_NAME = "rpb_mcp"
ADDON_VERSION = "0.1.0"
# Version of rpb's additions to the protocol (ping, save_blend, open_blend, get_addon_info).
PROTOCOL_VERSION = 1
HOST = "127.0.0.1"
DEFAULT_MCP_PORT = 9876
DEFAULT_CONTROL_PORT = 9877
# The module name the setup script gives the upstream addon (as upstream's installer does).
UPSTREAM_MODULE = "blender_mcp"
MAX_REQUEST_BYTES = 64 * 1024 * 1024
MAX_SCENE_OBJECTS = 1000
# Seconds between two looks at the command queue on the main thread.
DRAIN_INTERVAL = 0.02
# Longest stretch of main-thread time one drain may take before yielding to the UI.
DRAIN_BUDGET = 0.5

_STRUCTURAL = re.compile(rb'["\\{}\[\]]')


class ProtocolError(Exception):
    """The peer sent bytes that cannot be a request; the connection is closed after saying so."""


class RequestReader:
    """Cuts a byte stream into JSON objects, looking at each byte once.

    Only the characters that change the nesting state (quotes, backslashes, brackets) are
    visited, with a compiled regular expression, so large requests cost little.
    """

    def __init__(self):
        self.buffer = bytearray()
        self._reset()

    def _reset(self):
        self.scanned = 0
        self.start = None
        self.depth = 0
        self.in_string = False

    def feed(self, data):
        self.buffer += data
        if len(self.buffer) > MAX_REQUEST_BYTES:
            raise ProtocolError(f"request larger than {MAX_REQUEST_BYTES} bytes")
        requests = []
        while True:
            end = self._scan()
            if end is None:
                return requests
            raw = bytes(self.buffer[self.start:end])
            del self.buffer[:end]
            self._reset()
            try:
                requests.append(json.loads(raw.decode("utf-8")))
            except ValueError as error:
                raise ProtocolError(f"invalid JSON request: {error}") from None

    def _scan(self):
        if self.start is None:
            stripped = self.buffer.lstrip()
            if not stripped:
                self.buffer.clear()
                return None
            if stripped[0:1] != b"{":
                raise ProtocolError("expected a JSON object")
            del self.buffer[: len(self.buffer) - len(stripped)]
            self.start = 0
            self.depth = 1
            self.scanned = 1
        position = self.scanned
        while True:
            match = _STRUCTURAL.search(self.buffer, position)
            if match is None:
                self.scanned = len(self.buffer)
                return None
            index = match.start()
            char = self.buffer[index]
            if self.in_string:
                if char == 0x5C:  # backslash: skip the escaped byte
                    if index + 1 >= len(self.buffer):
                        self.scanned = index  # rescan the backslash when more arrives
                        return None
                    position = index + 2
                    continue
                if char == 0x22:
                    self.in_string = False
                position = index + 1
                continue
            if char == 0x22:
                self.in_string = True
            elif char in (0x7B, 0x5B):
                self.depth += 1
            elif char in (0x7D, 0x5D):
                self.depth -= 1
                if self.depth == 0:
                    return index + 1
            position = index + 1


class _Job:
    def __init__(self, request):
        self.request = request
        self.reply = None
        self.done = threading.Event()


class CommandServer:
    """Accepts connections on 127.0.0.1:port and runs their commands on the main thread."""

    def __init__(self, port, role):
        self.port = port
        self.role = role
        self.stopping = threading.Event()
        self.listener = None
        self.connections = set()
        self.lock = threading.Lock()

    def start(self):
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((HOST, self.port))
            listener.listen(16)
        except OSError:
            listener.close()
            raise
        listener.settimeout(0.5)
        self.listener = listener
        threading.Thread(
            target=self._accept_loop, name=f"rpb-{self.role}-accept", daemon=True
        ).start()
        if not bpy.app.timers.is_registered(_drain_jobs):
            bpy.app.timers.register(_drain_jobs, first_interval=0.0, persistent=True)

    def stop(self):
        self.stopping.set()
        if self.listener is not None:
            self.listener.close()
        with self.lock:
            for connection in list(self.connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
        # Wake up clients waiting on jobs that will never run.
        while True:
            try:
                job = _jobs.get_nowait()
            except queue.Empty:
                break
            job.reply = _error("the rpb addon is shutting down")
            job.done.set()

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            connection.settimeout(None)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.connections.add(connection)
            threading.Thread(
                target=self._serve, args=(connection,), name=f"rpb-{self.role}-client", daemon=True
            ).start()

    def _serve(self, connection):
        reader = RequestReader()
        try:
            while not self.stopping.is_set():
                data = connection.recv(65536)
                if not data:
                    return
                try:
                    requests = reader.feed(data)
                except ProtocolError as error:
                    _send(connection, _error(str(error)))
                    return
                for request in requests:
                    _send(connection, self._run(request))
        except OSError:
            return
        finally:
            with self.lock:
                self.connections.discard(connection)
            with contextlib.suppress(OSError):
                connection.close()

    def _run(self, request):
        job = _Job(request)
        _jobs.put(job)
        # A command may legitimately run for a long time (a render); wait as long as it takes,
        # but notice a shutdown.
        while not job.done.wait(1.0):
            if self.stopping.is_set():
                return _error("the rpb addon is shutting down")
        return job.reply


def _send(connection, reply):
    try:
        payload = json.dumps(reply)
    except (TypeError, ValueError) as error:
        payload = json.dumps(_error(f"the result cannot be sent as JSON: {error}"))
    connection.sendall(payload.encode("utf-8") + b"\n")


def _error(message):
    return {"status": "error", "message": message}


# The listening servers (control, and MCP with RPB_MCP_ADDON=rpb); all feed one queue, so
# commands run one at a time whichever port they came in on.
_servers = []
_jobs = queue.Queue()


def _drain_jobs():
    """Main-thread timer: runs queued commands, then asks to be called again."""
    if not _servers:
        return None
    deadline = _now() + DRAIN_BUDGET
    while _now() < deadline:
        try:
            job = _jobs.get_nowait()
        except queue.Empty:
            break
        try:
            job.reply = execute(job.request)
        except BaseException as error:  # noqa: BLE001 - the client must always get an answer
            job.reply = _error(f"internal error: {error!r}")
        finally:
            job.done.set()
    return DRAIN_INTERVAL


def _now():
    return time.monotonic()


def execute(request):
    """Runs one request on the main thread and returns the reply object."""
    if not isinstance(request, dict):
        return _error("a request must be a JSON object")
    command = request.get("type")
    params = request.get("params") or {}
    if not isinstance(command, str):
        return _error("a request needs a string 'type'")
    if not isinstance(params, dict):
        return _error("'params' must be a JSON object")
    handler = COMMANDS.get(command)
    if handler is None:
        return _error(f"Unknown command type: {command}")
    try:
        inspect.signature(handler).bind(**params)
    except TypeError as error:
        return _error(f"bad parameters for {command}: {error}")
    try:
        return {"status": "success", "result": handler(**params)}
    except Exception as error:  # noqa: BLE001 - reported to the client
        return _error(str(error) or type(error).__name__)


# ---------------------------------------------------------------------------------------------
# Commands


def cmd_ping():
    return {"pong": True}


def cmd_get_addon_info():
    return {
        "name": ADDON_NAME,
        "version": ADDON_VERSION,
        "protocol_version": PROTOCOL_VERSION,
        "blender_version": bpy.app.version_string.split(" ")[0],
        "port": _port_of("control"),
        "mcp": mcp_port_report(),
        "compute": compute_report(),
    }


def _port_of(role):
    return next((server.port for server in _servers if server.role == role), None)


def mcp_port_report():
    """Who serves the MCP port: the upstream addon (its protocol, whether it listens) or rpb's."""
    port = int(os.environ.get("RPB_MCP_PORT", DEFAULT_MCP_PORT))
    if mcp_addon() == "rpb":
        return {"addon": "rpb", "port": port, "listening": _port_of("mcp") == port}
    module = sys.modules.get(UPSTREAM_MODULE)
    if module is None:
        return {"addon": "upstream", "port": port, "loaded": False, "listening": False}
    server = getattr(bpy.types, "blendermcp_server", None)
    version = getattr(module, "bl_info", {}).get("version", ())
    return {
        "addon": "upstream",
        "port": port,
        "loaded": True,
        "addon_version": ".".join(str(part) for part in version),
        "protocol_version": getattr(module, "ADDON_PROTOCOL_VERSION", None),
        "listening": bool(server is not None and server.running and server.port == port),
    }


def mcp_addon():
    """Which addon serves the MCP port: "upstream" (default) or "rpb"."""
    return os.environ.get("RPB_MCP_ADDON", "upstream")


def point_upstream_at_mcp_port():
    """Sets the upstream addon's port (a scene property, saved in .blend files) to RPB_MCP_PORT
    in every scene, with its auto-start on, before its startup timer reads them."""
    if mcp_addon() != "upstream":
        return None
    port = int(os.environ.get("RPB_MCP_PORT", DEFAULT_MCP_PORT))
    for scene in bpy.data.scenes:
        if not hasattr(scene, "blendermcp_port"):
            return None
        if scene.blendermcp_port != port:
            scene.blendermcp_port = port
        if not scene.blendermcp_auto_start_server:
            scene.blendermcp_auto_start_server = True
    return None


def _vector(values):
    return [round(float(v), 6) for v in values]


def _current_scene():
    scene = getattr(bpy.context, "scene", None)
    if scene is None:
        window_manager = bpy.context.window_manager
        if window_manager and window_manager.windows:
            scene = window_manager.windows[0].scene
    if scene is None:
        scene = bpy.data.scenes[0]
    return scene


def cmd_get_scene_info(max_objects=MAX_SCENE_OBJECTS):
    scene = _current_scene()
    objects = list(scene.objects)
    return {
        "name": scene.name,
        "object_count": len(objects),
        "objects": [
            {"name": obj.name, "type": obj.type, "location": _vector(obj.location)}
            for obj in objects[: int(max_objects)]
        ],
        "truncated": len(objects) > int(max_objects),
        "materials_count": len(bpy.data.materials),
        "frame_current": scene.frame_current,
        "render_engine": scene.render.engine,
    }


def cmd_get_object_info(name):
    obj = bpy.data.objects.get(name)
    if obj is None:
        raise ValueError(f"Object not found: {name}")
    info = {
        "name": obj.name,
        "type": obj.type,
        "location": _vector(obj.location),
        "rotation": _vector(obj.rotation_euler),
        "scale": _vector(obj.scale),
        "visible": obj.visible_get(),
        "materials": [slot.material.name for slot in obj.material_slots if slot.material],
        "mesh": None,
    }
    if obj.type == "MESH" and obj.data is not None:
        mesh = obj.data
        info["mesh"] = {
            "vertices": len(mesh.vertices),
            "edges": len(mesh.edges),
            "polygons": len(mesh.polygons),
        }
    return info


def cmd_execute_code(code):
    namespace = {"bpy": bpy, "__name__": "__rpb_mcp__"}
    captured = io.StringIO()
    try:
        compiled = compile(code, "<execute_code>", "exec")
        with contextlib.redirect_stdout(captured):
            exec(compiled, namespace)  # noqa: S102 - running the client's code is the command
    except Exception:  # noqa: BLE001 - reported to the client with its traceback
        raise RuntimeError(
            "Code execution error: " + traceback.format_exc(limit=-8) + _tail(captured.getvalue())
        ) from None
    return {"executed": True, "result": captured.getvalue()}


def _tail(output):
    if not output:
        return ""
    return "\nstdout before the error:\n" + output[-4000:]


def _absolute(path, what):
    if not isinstance(path, str) or not path:
        raise ValueError(f"{what} needs a 'path'")
    path = os.path.expanduser(path)
    if not os.path.isabs(path):
        raise ValueError(f"{what} needs an absolute path, got {path!r}")
    return os.path.normpath(path)


def cmd_save_blend(path, compress=False):
    path = _absolute(path, "save_blend")
    if not path.endswith(".blend"):
        raise ValueError(f"save_blend needs a path ending in .blend, got {path!r}")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # Blender writes to '<path>@' and renames it into place, so a crash never leaves half a file.
    result = bpy.ops.wm.save_as_mainfile(
        filepath=path, check_existing=False, compress=bool(compress)
    )
    if "FINISHED" not in result:
        raise RuntimeError(f"Blender did not save {path}: {sorted(result)}")
    return {"path": path, "size": os.path.getsize(path)}


def cmd_open_blend(path, load_ui=True):
    path = _absolute(path, "open_blend")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file on the Blender machine: {path}")
    result = bpy.ops.wm.open_mainfile(filepath=path, load_ui=bool(load_ui))
    if "FINISHED" not in result:
        raise RuntimeError(f"Blender did not open {path}: {sorted(result)}")
    return {"path": path, "object_count": len(_current_scene().objects)}


def _view3d():
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                for region in area.regions:
                    if region.type == "WINDOW":
                        return window, area, region
    return None


def cmd_get_viewport_screenshot(filepath=None, max_size=800, format="png"):
    path = _absolute(filepath, "get_viewport_screenshot")
    if str(format).lower() != "png":
        raise ValueError("get_viewport_screenshot writes PNG only")
    found = _view3d()
    if found is None:
        raise RuntimeError("no 3D viewport is open")
    window, area, region = found
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with bpy.context.temp_override(window=window, area=area, region=region):
        bpy.ops.screen.screenshot_area(filepath=path)
    image = bpy.data.images.load(path, check_existing=False)
    try:
        width, height = image.size
        longest = max(width, height)
        if int(max_size) > 0 and longest > int(max_size):
            scale = int(max_size) / longest
            width, height = max(1, int(width * scale)), max(1, int(height * scale))
            image.scale(width, height)
            image.filepath_raw = path
            image.file_format = "PNG"
            image.save()
    finally:
        bpy.data.images.remove(image)
    return {"success": True, "width": width, "height": height, "filepath": path}


def _disabled(integration):
    def handler():
        return {
            "enabled": False,
            "message": f"{integration} is not available in rpb's Blender addon",
        }

    handler.__name__ = f"status_{integration}"
    return handler


def cmd_get_telemetry_consent():
    return {"consent": False}


COMMANDS = {
    "ping": cmd_ping,
    "get_addon_info": cmd_get_addon_info,
    "get_scene_info": cmd_get_scene_info,
    "get_object_info": cmd_get_object_info,
    "execute_code": cmd_execute_code,
    "get_viewport_screenshot": cmd_get_viewport_screenshot,
    "save_blend": cmd_save_blend,
    "open_blend": cmd_open_blend,
    "get_telemetry_consent": cmd_get_telemetry_consent,
    "get_polyhaven_status": _disabled("PolyHaven"),
    "get_hyper3d_status": _disabled("Hyper3D Rodin"),
    "get_sketchfab_status": _disabled("Sketchfab"),
    "get_hunyuan3d_status": _disabled("Hunyuan3D"),
}


# ---------------------------------------------------------------------------------------------
# Cycles compute device

_compute = None


def compute_report():
    global _compute
    if _compute is None:
        _compute = configure_compute()
    return _compute


def _refresh(cycles):
    if hasattr(cycles, "refresh_devices"):
        cycles.refresh_devices()
    else:
        cycles.get_devices()


def _devices(cycles, backend):
    return [
        {"name": device.name, "type": device.type, "use": bool(device.use)}
        for device in cycles.devices
        if device.type in (backend, "CPU")
    ]


def configure_compute():
    """Points Cycles at OptiX, then CUDA, then HIP, else the CPU; returns what was chosen."""
    addon = bpy.context.preferences.addons.get("cycles")
    if addon is None:
        return {
            "backend": "CPU",
            "devices": [],
            "detail": "the Cycles addon is not enabled; Cycles cannot use a GPU",
        }
    cycles = addon.preferences
    tried = []
    for backend in ("OPTIX", "CUDA", "HIP"):
        try:
            cycles.compute_device_type = backend
        except TypeError:
            tried.append(f"{backend}: not built into this Blender")
            continue
        try:
            _refresh(cycles)
        except Exception as error:  # noqa: BLE001 - a broken driver means: try the next one
            tried.append(f"{backend}: {error}")
            continue
        gpus = [device for device in cycles.devices if device.type == backend]
        if not gpus:
            tried.append(f"{backend}: no device")
            continue
        for device in cycles.devices:
            device.use = device.type == backend
        _use_gpu_in_scenes()
        names = ", ".join(device.name for device in gpus)
        return {
            "backend": backend,
            "devices": _devices(cycles, backend),
            "detail": f"Cycles renders on {backend} ({names})",
        }
    with contextlib.suppress(TypeError):
        cycles.compute_device_type = "NONE"
    for scene in bpy.data.scenes:
        scene.cycles.device = "CPU"
    return {
        "backend": "CPU",
        "devices": [],
        "detail": "no GPU found, Cycles renders on the CPU (" + "; ".join(tried) + ")",
    }


def _use_gpu_in_scenes():
    for scene in bpy.data.scenes:
        scene.cycles.device = "GPU"


@bpy.app.handlers.persistent
def _on_load_post(_unused):
    point_upstream_at_mcp_port()
    # Device choice is stored per scene in .blend files: keep opened files on the chosen device.
    if _compute is not None and _compute["backend"] != "CPU":
        _use_gpu_in_scenes()


def _configure_compute_once():
    try:
        compute_report()
    except Exception:  # noqa: BLE001 - keep serving even if the device setup fails
        traceback.print_exc()
    return None


# ---------------------------------------------------------------------------------------------
# Registration


def _write_status(state, **fields):
    path = os.environ.get("RPB_MCP_STATUS_FILE")
    if not path:
        return
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as status:
        json.dump({"state": state, "pid": os.getpid(), **fields}, status)
    os.replace(temporary, path)


def register():
    if bpy.app.background:
        print("rpb_mcp: not serving in background mode (blender -b): timers never run there")
        return
    with contextlib.suppress(Exception):
        bpy.context.preferences.view.show_splash = False
    ports = [("control", int(os.environ.get("RPB_CONTROL_PORT", DEFAULT_CONTROL_PORT)))]
    if mcp_addon() == "rpb":
        ports.append(("mcp", int(os.environ.get("RPB_MCP_PORT", DEFAULT_MCP_PORT))))
    for role, port in ports:
        server = CommandServer(port, role)
        try:
            server.start()
        except OSError as error:
            print(f"rpb_mcp: cannot listen on {HOST}:{port} ({role} port): {error}")
            _stop_servers()
            _write_status("failed", port=port, error=f"cannot listen on {HOST}:{port}: {error}")
            return
        _servers.append(server)
    if _on_load_post not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_on_load_post)
    bpy.app.timers.register(_configure_compute_once, first_interval=0.0)
    # Before the upstream addon's own startup timer (0.5 s) reads the scene's port.
    bpy.app.timers.register(point_upstream_at_mcp_port, first_interval=0.0)
    listening = ", ".join(f"{role} {HOST}:{port}" for role, port in ports)
    print(f"rpb_mcp {ADDON_VERSION}: serving {listening}; MCP port served by {mcp_addon()}")
    _write_status("listening", port=ports[0][1])


def _stop_servers():
    while _servers:
        _servers.pop().stop()


def unregister():
    _stop_servers()
    if bpy.app.timers.is_registered(_drain_jobs):
        bpy.app.timers.unregister(_drain_jobs)
    if bpy.app.timers.is_registered(point_upstream_at_mcp_port):
        bpy.app.timers.unregister(point_upstream_at_mcp_port)
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
