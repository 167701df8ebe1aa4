//! A small preview of a saved image, in Unicode half blocks: each character cell shows two
//! pixels, the upper one as the foreground colour of `▀` and the lower as its background. Any
//! terminal with colours shows it; nothing is sent to the terminal but text and colours.

use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};

/// The image at `path` scaled to fit `columns` × `rows` cells (aspect kept), or `None` if it
/// is not an image this build decodes (PNG, JPEG, GIF, WebP).
pub fn preview(path: &std::path::Path, columns: u32, rows: u32) -> Option<Vec<Line<'static>>> {
    let image = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .decode()
        .ok()?;
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
        let text = dir.path().join("note.txt");
        std::fs::write(&text, "not an image").unwrap();
        assert!(preview(&text, 20, 10).is_none());
    }
}
