//! Small files in `state_dir` (the pid file, the reload status): written atomically and
//! privately, never through a symlink.
//!
//! The folder is created with mode 0700 (an existing one is left as it is, with a warning
//! when others may write to it); a file is written to a fresh temporary name opened with
//! `O_CREAT | O_EXCL` (which never follows a symlink) and mode 0600, then renamed over the
//! final name (`rename` replaces a symlink there, it does not write through it).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Create `dir` (and its parents) with mode 0700 if missing.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.mode() & 0o022 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{:o}", meta.mode() & 0o777),
            "state_dir is writable by others than its owner: make it 0700"
        );
    }
    Ok(())
}

/// Write `contents` to `dir/name` atomically, mode 0600, never through a symlink.
pub fn write(dir: &Path, name: &str, contents: &[u8]) -> std::io::Result<()> {
    ensure_dir(dir)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    // A leftover of a crashed run with the same pid (or anything planted there) goes first:
    // `create_new` below refuses to open an existing name, symlink or not.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, dir.join(name))) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn private_atomic_and_never_through_a_symlink() {
        let base = std::env::temp_dir().join(format!("portico-statefile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let dir = base.join("state");
        let victim = base.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        // Symlinks planted at the final name and at the temporary name.
        std::os::unix::fs::symlink(&victim, dir.join("portico.pid")).unwrap();
        std::os::unix::fs::symlink(
            &victim,
            dir.join(format!(".portico.pid.{}.tmp", std::process::id())),
        )
        .unwrap();
        write(&dir, "portico.pid", b"42\n").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        let meta = std::fs::symlink_metadata(dir.join("portico.pid")).unwrap();
        assert!(meta.is_file());
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(dir.join("portico.pid")).unwrap(),
            "42\n"
        );
        // A new folder is 0700.
        let fresh = base.join("a/b");
        write(&fresh, "x", b"y").unwrap();
        assert_eq!(std::fs::metadata(&fresh).unwrap().mode() & 0o777, 0o700);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
