//! Decoding screenshots and telling a real picture from a blank one.

use std::collections::HashMap;
use std::fmt;
use std::io::Cursor;

use anyhow::{Context as _, bail};

/// Share of pixels the dominant colour must reach for [`Image::is_essentially_single_colour`].
pub const SINGLE_COLOUR_SHARE: f64 = 0.98;

/// A decoded picture as 8-bit RGB pixels (alpha dropped), row by row from the top left.
#[derive(Clone, PartialEq, Eq)]
pub struct Image {
    width: u32,
    height: u32,
    pixels: Vec<[u8; 3]>,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// What [`Image::summary`] found: enough to explain a failed "not blank" assertion.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ImageSummary {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// How many different RGB colours occur.
    pub distinct_colours: usize,
    /// The most frequent colour.
    pub dominant_colour: [u8; 3],
    /// The share of pixels (0.0 to 1.0) that have the dominant colour.
    pub dominant_share: f64,
}

impl Image {
    /// Decodes a PNG (any colour type and bit depth) into 8-bit RGB.
    ///
    /// # Errors
    /// Fails when the bytes are not a PNG or the picture is empty.
    pub fn from_png(bytes: &[u8]) -> anyhow::Result<Self> {
        let mut decoder = png::Decoder::new(Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::normalize_to_color8());
        let mut reader = decoder
            .read_info()
            .context("failed to read the png header")?;
        let size = reader
            .output_buffer_size()
            .context("the png is too large to decode")?;
        let mut buffer = vec![0_u8; size];
        let info = reader
            .next_frame(&mut buffer)
            .context("failed to decode the png image data")?;
        let channels = match info.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => bail!("the png decoder left an indexed image unexpanded"),
        };
        if info.width == 0 || info.height == 0 {
            bail!("the png is empty ({}x{})", info.width, info.height);
        }
        let row_bytes = usize::try_from(info.width)? * channels;
        let mut pixels =
            Vec::with_capacity(usize::try_from(info.width)? * usize::try_from(info.height)?);
        for row in buffer[..info.buffer_size()].chunks_exact(info.line_size) {
            for pixel in row[..row_bytes].chunks_exact(channels) {
                pixels.push(match channels {
                    1 | 2 => [pixel[0]; 3],
                    _ => [pixel[0], pixel[1], pixel[2]],
                });
            }
        }
        Ok(Self {
            width: info.width,
            height: info.height,
            pixels,
        })
    }

    /// Builds an image from RGB pixels, row by row (handy for unit tests).
    ///
    /// # Errors
    /// Fails when `pixels` does not hold exactly `width * height` entries or the image is empty.
    pub fn from_rgb(width: u32, height: u32, pixels: Vec<[u8; 3]>) -> anyhow::Result<Self> {
        let expected = usize::try_from(u64::from(width) * u64::from(height))?;
        if expected == 0 || pixels.len() != expected {
            bail!(
                "{width}x{height} needs {expected} pixels, got {}",
                pixels.len()
            );
        }
        Ok(Self {
            width,
            height,
            pixels,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The colour at `(x, y)`, or `None` outside the picture.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let index = usize::try_from(u64::from(y) * u64::from(self.width) + u64::from(x)).ok()?;
        self.pixels.get(index).copied()
    }

    /// Counts colours, finds the dominant one and its share.
    pub fn summary(&self) -> ImageSummary {
        let mut counts: HashMap<[u8; 3], usize> = HashMap::new();
        for pixel in &self.pixels {
            *counts.entry(*pixel).or_default() += 1;
        }
        let (dominant_colour, dominant_count) = counts
            .iter()
            .max_by_key(|(colour, count)| (**count, **colour))
            .map_or(([0; 3], 0), |(colour, count)| (*colour, *count));
        ImageSummary {
            width: self.width,
            height: self.height,
            distinct_colours: counts.len(),
            dominant_colour,
            dominant_share: share(dominant_count, self.pixels.len()),
        }
    }

    /// Whether the picture is blank for practical purposes: at least [`SINGLE_COLOUR_SHARE`]
    /// of its pixels have one colour. A black desktop with a small toolbar, an empty canvas or
    /// a white page all count as single-colour; a desktop with an application does not.
    pub fn is_essentially_single_colour(&self) -> bool {
        self.summary().dominant_share >= SINGLE_COLOUR_SHARE
    }

    /// The share of pixels (0.0 to 1.0) whose channels each differ from `colour` by at most
    /// `tolerance`.
    pub fn share_near(&self, colour: [u8; 3], tolerance: u8) -> f64 {
        let near = self
            .pixels
            .iter()
            .filter(|pixel| {
                pixel
                    .iter()
                    .zip(colour)
                    .all(|(a, b)| a.abs_diff(b) <= tolerance)
            })
            .count();
        share(near, self.pixels.len())
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "pixel counts of screenshots are far below 2^52"
)]
fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(width: u32, height: u32, colour: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(colour);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(data).unwrap();
        writer.finish().unwrap();
        out
    }

    #[test]
    fn a_uniform_png_is_single_colour() {
        let data = [10, 20, 30, 255].repeat(16);
        let image = Image::from_png(&encode(4, 4, png::ColorType::Rgba, &data)).unwrap();
        let summary = image.summary();
        assert_eq!((summary.width, summary.height), (4, 4));
        assert_eq!(summary.distinct_colours, 1);
        assert_eq!(summary.dominant_colour, [10, 20, 30]);
        assert!((summary.dominant_share - 1.0).abs() < f64::EPSILON);
        assert!(image.is_essentially_single_colour());
    }

    #[test]
    fn a_two_colour_png_is_not_single_colour() {
        let mut data = [255, 0, 255].repeat(8);
        data.extend([0, 0, 0].repeat(8));
        let image = Image::from_png(&encode(4, 4, png::ColorType::Rgb, &data)).unwrap();
        assert!(!image.is_essentially_single_colour());
        assert_eq!(image.pixel(0, 0), Some([255, 0, 255]));
        assert_eq!(image.pixel(3, 3), Some([0, 0, 0]));
        assert_eq!(image.pixel(4, 0), None);
        assert!((image.share_near([250, 5, 250], 5) - 0.5).abs() < f64::EPSILON);
        assert!(image.share_near([250, 5, 250], 4).abs() < f64::EPSILON);
    }

    #[test]
    fn a_few_stray_pixels_do_not_make_a_picture() {
        let mut pixels = vec![[0, 0, 0]; 10_000];
        pixels[..100].fill([200, 200, 200]);
        let image = Image::from_rgb(100, 100, pixels).unwrap();
        assert_eq!(image.summary().distinct_colours, 2);
        assert!(image.is_essentially_single_colour());
    }

    #[test]
    fn grayscale_pngs_decode_to_grey_rgb() {
        let image = Image::from_png(&encode(2, 1, png::ColorType::Grayscale, &[0, 128])).unwrap();
        assert_eq!(image.pixel(1, 0), Some([128, 128, 128]));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Image::from_png(b"not a png").is_err());
        assert!(Image::from_rgb(2, 2, vec![[0; 3]; 3]).is_err());
        assert!(Image::from_rgb(0, 0, Vec::new()).is_err());
    }
}
