//! `portico check`: validate like `nginx -t`.

use std::path::Path;

use crate::exit::Failure;

/// Load and validate `path`; print every problem as FILE:LINE:COL with a hint.
pub fn check(path: &Path) -> Result<(), Failure> {
    let config = load(path)?;
    for warning in crate::cluster_acme::warnings(&config) {
        eprintln!("{}: warning: {warning}", path.display());
    }
    println!("{}: configuration is valid", path.display());
    Ok(())
}

/// Load a config, mapping problems to exit statuses: an unreadable file or an invalid
/// config is exit 1 (the config is what is wrong).
pub fn load(path: &Path) -> Result<portico_config::Config, Failure> {
    portico_config::load(path).map_err(|err| match err {
        portico_config::ConfigError::Invalid(diags) => Failure::InvalidConfig(format!(
            "{diags}\n{}: configuration is invalid ({} problem{})",
            path.display(),
            diags.0.len(),
            if diags.0.len() == 1 { "" } else { "s" }
        )),
        other => Failure::InvalidConfig(format!("portico: {other}")),
    })
}
