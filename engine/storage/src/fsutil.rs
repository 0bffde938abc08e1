//! Durable file operations: what "written" means for files Weir relies on.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Makes directory entries (creations, renames, removals) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}

/// Replaces `path` with `contents` atomically: a reader (or a crash) sees the
/// old file or the new one, never a mix. Write a temporary, fsync it, rename
/// it over the target, fsync the directory.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp).map_err(Error::io(&tmp))?;
        file.write_all(contents).map_err(Error::io(&tmp))?;
        file.sync_all().map_err(Error::io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(Error::io(path))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}
