//! Fuzz the config parser: any text must give a `Config` or diagnostics, never a panic, and
//! every diagnostic must point inside the text (line and column are 1-based).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(portico_config::ConfigError::Invalid(diags)) =
        portico_config::parse(text, Path::new("/fuzz/portico.toml"))
    {
        let lines = text.split('\n').count();
        for d in &diags.0 {
            assert!(d.line >= 1 && d.line <= lines.max(1), "line out of range: {d}");
            assert!(d.col >= 1, "column out of range: {d}");
        }
    }
});
