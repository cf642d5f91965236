use serde::{Deserialize, Serialize};

/// What `get_addon_info` reports: the addon, its protocol, Blender, and the compute device.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct AddonInfo {
    /// The addon's module name (`rpb_mcp`).
    pub name: String,
    /// The addon's version.
    pub version: String,
    /// Version of rpb's protocol extensions (`save_blend`, `open_blend`, `ping`, ...).
    pub protocol_version: u32,
    /// Blender's version, e.g. `3.4.1`.
    pub blender_version: String,
    /// The compute device the addon configured for Cycles at startup.
    pub compute: ComputeDevice,
    /// Who serves the MCP port (`None` from an rpb addon older than the control port).
    #[serde(default)]
    pub mcp: Option<McpPortInfo>,
}

/// Who serves Blender's MCP port, as rpb's addon sees it from inside Blender.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct McpPortInfo {
    /// `upstream` (the blender-mcp addon) or `rpb`.
    pub addon: String,
    /// The MCP port.
    pub port: u16,
    /// Whether that addon's server listens on the port now.
    pub listening: bool,
    /// The upstream addon's own version (its `bl_info`), when it serves the port.
    #[serde(default)]
    pub addon_version: Option<String>,
    /// The protocol version the upstream addon speaks (the MCP server expects
    /// [`UPSTREAM_PROTOCOL`](super::UPSTREAM_PROTOCOL)).
    #[serde(default)]
    pub protocol_version: Option<u32>,
}

/// The device Cycles renders on, as chosen by the addon at startup.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ComputeDevice {
    /// The backend in use: `OptiX`, then CUDA, then HIP were tried, in that order.
    pub backend: ComputeBackend,
    /// The devices Cycles lists for that backend, and whether each is used.
    #[serde(default)]
    pub devices: Vec<DeviceEntry>,
    /// A human-readable sentence saying what was chosen and why.
    #[serde(default)]
    pub detail: String,
}

/// Cycles compute backends, in the order the addon tries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
#[non_exhaustive]
pub enum ComputeBackend {
    /// NVIDIA `OptiX`.
    Optix,
    /// NVIDIA CUDA.
    Cuda,
    /// AMD HIP.
    Hip,
    /// No GPU backend: Cycles renders on the CPU.
    Cpu,
    /// A value this version of the client does not know.
    #[serde(other)]
    Unknown,
}

impl ComputeBackend {
    /// Whether Cycles renders on a GPU.
    pub fn is_gpu(self) -> bool {
        matches!(self, Self::Optix | Self::Cuda | Self::Hip)
    }
}

/// One device Cycles lists.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct DeviceEntry {
    /// Device name, e.g. `NVIDIA GeForce RTX 4090`.
    pub name: String,
    /// Device type as Cycles names it (`OPTIX`, `CUDA`, `CPU`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether Cycles uses it.
    #[serde(rename = "use")]
    pub used: bool,
}

/// What `get_scene_info` reports.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SceneInfo {
    /// The scene's name.
    pub name: String,
    /// How many objects the scene has.
    pub object_count: usize,
    /// The objects, at most `max_objects` of them (see `truncated`).
    pub objects: Vec<ObjectSummary>,
    /// Whether `objects` was cut short.
    #[serde(default)]
    pub truncated: bool,
    /// How many materials the file has.
    #[serde(default)]
    pub materials_count: usize,
}

impl SceneInfo {
    /// The object names, in the order Blender lists them.
    pub fn object_names(&self) -> impl Iterator<Item = &str> {
        self.objects.iter().map(|object| object.name.as_str())
    }
}

/// One object in [`SceneInfo`].
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ObjectSummary {
    /// The object's name.
    pub name: String,
    /// Blender's object type (`MESH`, `LIGHT`, `CAMERA`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// World location.
    pub location: [f64; 3],
}

/// What `get_object_info` reports.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ObjectInfo {
    /// The object's name.
    pub name: String,
    /// Blender's object type (`MESH`, `LIGHT`, `CAMERA`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Location.
    pub location: [f64; 3],
    /// Euler rotation in radians.
    pub rotation: [f64; 3],
    /// Scale.
    pub scale: [f64; 3],
    /// Whether it is visible in the viewport.
    pub visible: bool,
    /// Names of its material slots' materials.
    #[serde(default)]
    pub materials: Vec<String>,
    /// Mesh statistics, for mesh objects.
    #[serde(default)]
    pub mesh: Option<MeshStats>,
}

/// Mesh statistics in [`ObjectInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct MeshStats {
    /// Vertex count.
    pub vertices: usize,
    /// Edge count.
    pub edges: usize,
    /// Polygon count.
    pub polygons: usize,
}

/// What `save_blend` reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct SavedBlend {
    /// Absolute path of the saved file on the Blender machine.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What `open_blend` reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct OpenedBlend {
    /// Absolute path of the opened file on the Blender machine.
    pub path: String,
    /// How many objects the opened file's scene has.
    pub object_count: usize,
}

/// What `get_viewport_screenshot` reports.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct Screenshot {
    /// Path of the image on the Blender machine.
    pub filepath: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}
