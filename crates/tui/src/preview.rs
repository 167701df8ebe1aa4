//! A small preview of a saved image, in Unicode half blocks: each character cell shows two
//! pixels, the upper one as the foreground colour of `▀` and the lower as its background. Any
//! terminal with colours shows it; nothing is sent to the terminal but text and colours.

use ratatui::style::{Color, Style};

/// The largest picture previewed, in pixels a side, and the memory its decoding may take.
pub const MAX_SIDE: u32 = 8192;
pub const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;
use ratatui::text::{Line, Span};

/// The image at `path` scaled to fit `columns` × `rows` cells (aspect kept), or `None` if it
/// is not an image this build decodes (PNG, JPEG, GIF, WebP) within [`MAX_SIDE`] pixels a side
/// and [`MAX_DECODE_BYTES`] of memory: a peer's picture cannot make the terminal app balloon.
pub fn preview(path: &std::path::Path, columns: u32, rows: u32) -> Option<Vec<Line<'static>>> {
    let mut reader = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let image = reader.decode().ok()?;
    let image = image
        .resize(
            columns.max(1),
            rows.max(1) * 2,
            image::imageops::FilterType::Triangle,
        )
        .to_rgb8();
    let (width, height) = image.dimensions();
    let pixel = |x: u32, y: u32| {
        let [r, g, b] = image.get_pixel(x, y).0;
        Color::Rgb(r, g, b)
    };
    let lines = (0..height.div_ceil(2))
        .map(|row| {
            let spans: Vec<Span<'static>> = (0..width)
                .map(|x| {
                    let top = pixel(x, row * 2);
                    let bottom = if row * 2 + 1 < height {
                        pixel(x, row * 2 + 1)
                    } else {
                        Color::Reset
                    };
                    Span::styled("▀", Style::default().fg(top).bg(bottom))
                })
                .collect();
            Line::from(spans)
        })
        .collect();
    Some(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_becomes_half_blocks_of_its_colours_within_the_size_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flag.png");
        // Red above, blue below.
        let image = image::RgbImage::from_fn(40, 40, |_, y| {
            if y < 20 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        image.save(&path).unwrap();
        let lines = preview(&path, 20, 10).unwrap();
        assert_eq!(lines.len(), 10);
        assert!(lines.iter().all(|l| l.spans.len() == 20));
        assert_eq!(lines[0].spans[0].style.fg, Some(Color::Rgb(255, 0, 0)));
        assert_eq!(lines[9].spans[0].style.bg, Some(Color::Rgb(0, 0, 255)));
        let huge = dir.path().join("huge.png");
        image::GrayImage::new(MAX_SIDE + 1, 1).save(&huge).unwrap();
        assert!(preview(&huge, 20, 10).is_none(), "past the size bound");
        let text = dir.path().join("note.txt");
        std::fs::write(&text, "not an image").unwrap();
        assert!(preview(&text, 20, 10).is_none());
    }
}
