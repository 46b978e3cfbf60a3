//! Small helpers shared by the commands.

use std::path::{Path, PathBuf};

/// The workspace root: the parent of this crate's manifest directory.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A UTC wall-clock time, split for formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub date: crate::runtime::Date,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
    pub millis: u32,
}

impl UtcTime {
    pub fn from_unix_millis(ms: i128) -> Self {
        let secs = ms.div_euclid(1000) as i64;
        let day = secs.rem_euclid(86_400);
        UtcTime {
            date: crate::runtime::Date::from_unix_days(secs.div_euclid(86_400)),
            hour: day / 3600,
            minute: day / 60 % 60,
            second: day % 60,
            millis: ms.rem_euclid(1000) as u32,
        }
    }

    pub fn now() -> Self {
        Self::from_unix_millis(unix_millis() as i128)
    }

    /// `2026-11-26T10:48:23Z`
    pub fn rfc3339(&self) -> String {
        format!(
            "{}T{:02}:{:02}:{:02}Z",
            self.date, self.hour, self.minute, self.second
        )
    }

    /// CodeBuild's log timestamp: `2026/11/26 10:48:23.123`.
    pub fn codebuild_log(&self) -> String {
        let d = self.date;
        format!(
            "{:04}/{:02}/{:02} {:02}:{:02}:{:02}.{:03}",
            d.year, d.month, d.day, self.hour, self.minute, self.second, self.millis
        )
    }
}

/// Opens `path` for reading only if it is a regular file itself: never through a symlink at its
/// last component, never a FIFO or a device (opening one could block, or read without end).
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let file = std::fs::File::from(rustix::fs::open(path, flags, Mode::empty())?);
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// Writes `bytes` to `path` through a temporary file beside it and a rename, so readers never see
/// half a file; readable like any build output (0644; tempfile creates 0600).
pub fn write_build_output(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut temp, bytes)?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))?;
    temp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// [`open_regular`], read as text: at most `max_bytes` (more is an error, not a truncation).
pub fn read_regular(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut text = String::new();
    open_regular(path)?
        .take(max_bytes + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > max_bytes {
        return Err(std::io::Error::other(format!(
            "{} is over {max_bytes} bytes",
            path.display()
        )));
    }
    Ok(text)
}

/// An operation stopped by Ctrl-C (the caller exits 130).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::UtcTime;

    #[test]
    fn timestamps_format_like_rfc3339_and_codebuild() {
        let t = UtcTime::from_unix_millis(1_764_154_103_045);
        assert_eq!(t.rfc3339(), "2025-11-26T10:48:23Z");
        assert_eq!(t.codebuild_log(), "2025/11/26 10:48:23.045");
    }
}
