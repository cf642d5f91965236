//! What to render: frames, engine, image format, device and the rest, parsed and checked before
//! anything starts on the pod.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The most frames one job may hold (Blender's own frame limit is about a million).
pub const MAX_FRAMES: usize = 100_000;
/// Blender's largest frame number.
const MAX_FRAME: i64 = 1_048_574;

/// A list of frames: `1-250`, `1,5,9`, `1-100x5` (every 5th), or any comma-separated mix. Frames
/// keep the order given; a frame named twice is rendered once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FrameSpec(Vec<i64>);

impl FrameSpec {
    /// The frames, in render order.
    pub fn frames(&self) -> &[i64] {
        &self.0
    }

    /// How many frames.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none (never true for a parsed spec).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for FrameSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = |part: &str, why: &str| {
            Error::RenderOptions(format!(
                "bad frame spec {text:?}: {part:?} {why} (examples: 1-250, 1,5,9, 1-100x5)"
            ))
        };
        let mut frames = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for part in text.split(',').map(str::trim) {
            if part.is_empty() {
                return Err(bad(part, "is empty"));
            }
            let (range, step) = match part.split_once(['x', ':']) {
                Some((range, step)) => {
                    let step: i64 = step
                        .trim()
                        .parse()
                        .map_err(|_| bad(part, "has a step that is not a whole number"))?;
                    if step < 1 {
                        return Err(bad(part, "has a step below 1"));
                    }
                    (range.trim(), step)
                }
                None => (part, 1),
            };
            let number = |value: &str| -> Result<i64> {
                let frame: i64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(part, "is not a frame number or a range A-B"))?;
                if !(0..=MAX_FRAME).contains(&frame) {
                    return Err(bad(part, "is outside Blender's frames 0..=1048574"));
                }
                Ok(frame)
            };
            let (first, last) = if let Some((first, last)) = range.split_once(['-', '.']) {
                (number(first)?, number(last.trim_start_matches('.'))?)
            } else {
                let frame = number(range)?;
                (frame, frame)
            };
            if last < first {
                return Err(bad(part, "ends before it starts"));
            }
            let mut frame = first;
            while frame <= last {
                if seen.insert(frame) {
                    frames.push(frame);
                    if frames.len() > MAX_FRAMES {
                        return Err(bad(part, "makes more than 100000 frames: split the job"));
                    }
                }
                frame += step;
            }
        }
        Ok(Self(frames))
    }
}

impl fmt::Display for FrameSpec {
    /// Compact ranges: `1-4,8,10-20x2`-like output with steps of 1 only (`1-4,8,10`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut index = 0;
        let mut first = true;
        while index < self.0.len() {
            let start = self.0[index];
            let mut end = index;
            while end + 1 < self.0.len() && self.0[end + 1] == self.0[end] + 1 {
                end += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == index {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{}", self.0[end])?;
            }
            index = end + 1;
        }
        Ok(())
    }
}

/// Generates `FromStr`, `Display` and the name list of a lowercase-named enum.
macro_rules! named_enum {
    ($kind:literal, $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The accepted names.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name, as accepted on the command line.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self> {
                match text.trim().to_ascii_lowercase().as_str() {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(Error::RenderOptions(format!(
                        "unknown {} {text:?} (one of: {})",
                        $kind,
                        Self::NAMES.join(", ")
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The render engine. EEVEE's internal name differs between Blender versions; the driver
/// picks the one the pod's Blender has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Engine {
    /// Cycles (GPU by default).
    Cycles,
    /// EEVEE.
    Eevee,
    /// Workbench.
    Workbench,
}

named_enum!("engine", Engine { Cycles => "cycles", Eevee => "eevee", Workbench => "workbench" });

/// The image format of the frames. Movies are refused: a job makes frames, each verified and
/// resumable on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ImageFormat {
    /// PNG (`.png`).
    #[serde(rename = "PNG")]
    Png,
    /// `OpenEXR`, 16-bit half float (`.exr`).
    #[serde(rename = "OPEN_EXR")]
    OpenExr,
    /// JPEG (`.jpg`).
    #[serde(rename = "JPEG")]
    Jpeg,
}

impl ImageFormat {
    /// The accepted names.
    pub const NAMES: &'static [&'static str] = &["png", "open_exr", "jpeg"];

    /// The file extension Blender gives it.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Png => "png",
            Self::OpenExr => "exr",
            Self::Jpeg => "jpg",
        }
    }

    /// Blender's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Png => "PNG",
            Self::OpenExr => "OPEN_EXR",
            Self::Jpeg => "JPEG",
        }
    }
}

impl FromStr for ImageFormat {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "PNG" => Ok(Self::Png),
            "OPEN_EXR" | "EXR" | "OPENEXR" => Ok(Self::OpenExr),
            "JPEG" | "JPG" => Ok(Self::Jpeg),
            "FFMPEG" | "AVI_JPEG" | "AVI_RAW" | "MP4" | "MKV" | "MOV" => {
                Err(Error::RenderOptions(format!(
                    "format {text:?} makes a movie: a render job makes frames (PNG, OPEN_EXR or \
                     JPEG), each verified and resumable; encode the movie from the frames \
                     afterwards (for example with ffmpeg)"
                )))
            }
            _ => Err(Error::RenderOptions(format!(
                "unknown image format {text:?} (one of: PNG, OPEN_EXR, JPEG)"
            ))),
        }
    }
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The device Cycles renders on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Device {
    /// The best GPU backend found (`OptiX`, then CUDA, HIP, oneAPI), else the CPU.
    #[default]
    Auto,
    /// The CPU, even when a GPU is there.
    Cpu,
    /// NVIDIA `OptiX`.
    Optix,
    /// NVIDIA CUDA.
    Cuda,
    /// AMD HIP.
    Hip,
    /// Intel oneAPI.
    Oneapi,
}

named_enum!("device", Device {
    Auto => "auto",
    Cpu => "cpu",
    Optix => "optix",
    Cuda => "cuda",
    Hip => "hip",
    Oneapi => "oneapi",
});

/// Where the `.blend` of a job comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RenderSource {
    /// The scene open in the session's Blender, saved first as a new project version.
    OpenScene,
    /// A saved version of the project (`latest`, a file name or a stem), uploaded when the pod
    /// lacks it.
    Version(String),
    /// A `.blend` already on the pod (absolute, or relative to the pod root). Rendered in place:
    /// keep it unchanged while the job runs.
    PodPath(String),
}

/// How to render: everything about a job but its file and frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RenderSettings {
    /// The engine; `None` keeps the file's.
    pub engine: Option<Engine>,
    /// Samples per pixel (Cycles, EEVEE); `None` keeps the file's.
    pub samples: Option<u32>,
    /// Output size in pixels; `None` keeps the file's.
    pub resolution: Option<(u32, u32)>,
    /// Output size in percent of the resolution; `None` keeps the file's.
    pub percent: Option<u32>,
    /// Image format. Default: PNG.
    pub format: ImageFormat,
    /// Cycles device. Default: the best GPU found.
    pub device: Device,
    /// Cycles denoising on or off; `None` keeps the file's.
    pub denoise: Option<bool>,
    /// Camera object; `None` keeps the scene's.
    pub camera: Option<String>,
    /// Scene; `None` renders the file's active scene.
    pub scene: Option<String>,
    /// A single view layer; `None` renders every enabled layer.
    pub view_layer: Option<String>,
    /// How often a failed frame is tried again. Default: 2.
    pub retries: u32,
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            engine: None,
            samples: None,
            resolution: None,
            percent: None,
            format: ImageFormat::Png,
            device: Device::Auto,
            denoise: None,
            camera: None,
            scene: None,
            view_layer: None,
            retries: 2,
        }
    }
}

/// The options of a render job.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RenderOptions {
    /// Where the `.blend` comes from.
    pub source: RenderSource,
    /// The frames.
    pub frames: FrameSpec,
    /// How to render them.
    pub settings: RenderSettings,
}

impl RenderOptions {
    /// Options for `frames` of `source`, everything else at its default.
    pub fn new(source: RenderSource, frames: FrameSpec) -> Self {
        Self {
            source,
            frames,
            settings: RenderSettings::default(),
        }
    }

    /// Checks what can be checked without the file.
    ///
    /// # Errors
    ///
    /// [`Error::RenderOptions`] naming the option and its allowed values.
    pub fn validate(&self) -> Result<()> {
        let settings = &self.settings;
        let bad = |message: String| Err(Error::RenderOptions(message));
        if self.frames.is_empty() {
            return bad("no frames to render".into());
        }
        if let Some(samples) = settings.samples
            && !(1..=1_000_000).contains(&samples)
        {
            return bad(format!("samples must be 1..=1000000, got {samples}"));
        }
        if let Some((width, height)) = settings.resolution
            && (!(4..=65_536).contains(&width) || !(4..=65_536).contains(&height))
        {
            return bad(format!(
                "resolution must be 4..=65536 pixels each way, got {width}x{height}"
            ));
        }
        if let Some(percent) = settings.percent
            && !(1..=32_767).contains(&percent)
        {
            return bad(format!("percent must be 1..=32767, got {percent}"));
        }
        if settings.retries > 20 {
            return bad(format!("retries must be 0..=20, got {}", settings.retries));
        }
        if settings.device != Device::Auto
            && settings.device != Device::Cpu
            && settings
                .engine
                .is_some_and(|engine| engine != Engine::Cycles)
        {
            return bad(format!(
                "--device {} is for Cycles; {} picks its own GPU",
                settings.device,
                settings.engine.map_or("this engine", Engine::as_str)
            ));
        }
        for (what, value) in [
            ("camera", &settings.camera),
            ("scene", &settings.scene),
            ("view layer", &settings.view_layer),
        ] {
            if let Some(value) = value
                && (value.is_empty() || value.len() > 255 || value.chars().any(char::is_control))
            {
                return bad(format!(
                    "the {what} name {value:?} cannot be a Blender name (1 to 255 characters, no control characters)"
                ));
            }
        }
        if let RenderSource::PodPath(path) = &self.source
            && (!std::path::Path::new(path)
                .extension()
                .is_some_and(|extension| extension.eq_ignore_ascii_case("blend"))
                || path
                    .chars()
                    .any(|c| c.is_control() || c == '"' || c == '\\'))
        {
            return bad(format!(
                "{path:?} is not a path to a .blend file (it must end with .blend and hold no quote, backslash or control character)"
            ));
        }
        Ok(())
    }
}

/// Parses `WIDTHxHEIGHT`.
///
/// # Errors
///
/// [`Error::RenderOptions`] for anything else.
pub fn parse_resolution(text: &str) -> Result<(u32, u32)> {
    let parsed = text.split_once(['x', 'X']).and_then(|(width, height)| {
        Some((width.trim().parse().ok()?, height.trim().parse().ok()?))
    });
    parsed.ok_or_else(|| {
        Error::RenderOptions(format!(
            "bad resolution {text:?}: give WIDTHxHEIGHT, e.g. 1920x1080"
        ))
    })
}

/// The job's spec as the pod-side driver reads it (`spec.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JobSpec {
    /// Format marker.
    pub rpb_render_spec: u32,
    /// The `.blend` on the pod.
    pub blend: String,
    /// SHA-256 of the `.blend` when rpb knows it (project versions).
    pub blend_sha256: Option<String>,
    /// Frames in render order.
    pub frames: FrameSpec,
    /// How to render them.
    #[serde(flatten)]
    pub settings: RenderSettings,
}

impl JobSpec {
    /// The spec for `options` rendering `blend`.
    pub fn new(options: &RenderOptions, blend: String, blend_sha256: Option<String>) -> Self {
        Self {
            rpb_render_spec: 1,
            blend,
            blend_sha256,
            frames: options.frames.clone(),
            settings: options.settings.clone(),
        }
    }

    /// The job id: a fingerprint of the project and the spec, so the same render asked again
    /// is the same job and resumes instead of starting over.
    pub fn job_id(&self, project: &str) -> String {
        let text = serde_json::to_string(self).unwrap_or_default();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in project.bytes().chain([0]).chain(text.bytes()) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("r{hash:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(text: &str) -> Vec<i64> {
        text.parse::<FrameSpec>().expect(text).frames().to_vec()
    }

    #[test]
    fn frame_specs() {
        assert_eq!(frames("1-4"), [1, 2, 3, 4]);
        assert_eq!(frames("1,5,9"), [1, 5, 9]);
        assert_eq!(frames("1-10x5"), [1, 6]);
        assert_eq!(frames("1-100x25"), [1, 26, 51, 76]);
        assert_eq!(frames(" 3 , 1-2, 3"), [3, 1, 2]);
        assert_eq!(frames("7"), [7]);
        assert_eq!(frames("1..3"), [1, 2, 3]);
        assert_eq!(frames("1-250").len(), 250);
        assert_eq!(
            "1-4,8,10-12".parse::<FrameSpec>().unwrap().to_string(),
            "1-4,8,10-12"
        );
    }

    #[test]
    fn bad_frame_specs_say_why() {
        for (text, why) in [
            ("", "is empty"),
            ("1,,2", "is empty"),
            ("a-b", "not a frame number"),
            ("5-1", "ends before it starts"),
            ("1-10x0", "step below 1"),
            ("1-10xq", "step that is not"),
            ("-3", "not a frame number"),
            ("2000000", "outside"),
            ("0-1048574", "more than 100000"),
        ] {
            let error = text.parse::<FrameSpec>().unwrap_err().to_string();
            assert!(error.contains(why), "{text:?}: {error}");
            assert!(error.contains("1-100x5"), "{error}");
        }
    }

    #[test]
    fn engines_formats_devices() {
        assert_eq!("CYCLES".parse::<Engine>().unwrap(), Engine::Cycles);
        assert_eq!("eevee".parse::<Engine>().unwrap(), Engine::Eevee);
        let error = "luxcore".parse::<Engine>().unwrap_err().to_string();
        assert!(error.contains("cycles, eevee, workbench"), "{error}");
        assert_eq!("exr".parse::<ImageFormat>().unwrap(), ImageFormat::OpenExr);
        let error = "FFMPEG".parse::<ImageFormat>().unwrap_err().to_string();
        assert!(error.contains("makes a movie"), "{error}");
        assert_eq!("optix".parse::<Device>().unwrap(), Device::Optix);
        assert!("metal".parse::<Device>().is_err());
        assert_eq!(parse_resolution("64x48").unwrap(), (64, 48));
        assert!(parse_resolution("64").is_err());
    }

    #[test]
    fn validation() {
        let mut options = RenderOptions::new(RenderSource::OpenScene, "1".parse().unwrap());
        options.validate().unwrap();
        options.settings.samples = Some(0);
        assert!(options.validate().is_err());
        options.settings.samples = None;
        options.settings.engine = Some(Engine::Eevee);
        options.settings.device = Device::Optix;
        assert!(
            options
                .validate()
                .unwrap_err()
                .to_string()
                .contains("for Cycles")
        );
        options.settings.device = Device::Auto;
        options.settings.camera = Some("Cam\nera".into());
        assert!(options.validate().is_err());
        options.settings.camera = None;
        options.source = RenderSource::PodPath("/runpod/x.txt".into());
        assert!(
            options
                .validate()
                .unwrap_err()
                .to_string()
                .contains(".blend")
        );
    }

    #[test]
    fn the_same_spec_is_the_same_job() {
        let options = RenderOptions::new(RenderSource::OpenScene, "1-4".parse().unwrap());
        let a = JobSpec::new(&options, "/runpod/projects/p/a.blend".into(), None);
        let b = JobSpec::new(&options, "/runpod/projects/p/a.blend".into(), None);
        assert_eq!(a.job_id("p"), b.job_id("p"));
        assert_ne!(a.job_id("p"), a.job_id("q"));
        let c = JobSpec::new(&options, "/runpod/projects/p/b.blend".into(), None);
        assert_ne!(a.job_id("p"), c.job_id("p"));
        assert!(a.job_id("p").starts_with('r') && a.job_id("p").len() == 17);
    }
}
