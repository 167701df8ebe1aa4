//! QR codes for the page to draw (a link code, a safety number): the modules, not an image,
//! so that the page draws them on a canvas and nothing here renders markup.

use serde::Serialize;

/// `width` modules a side, `modules` row by row, `1` dark (the page adds the quiet zone).
#[derive(Debug, Serialize)]
pub struct Qr {
    pub width: usize,
    pub modules: String,
}

pub fn qr_json(text: &str) -> Option<Qr> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let modules = code
        .to_colors()
        .iter()
        .map(|c| if *c == qrcode::Color::Dark { '1' } else { '0' })
        .collect();
    Some(Qr {
        width: code.width(),
        modules,
    })
}
