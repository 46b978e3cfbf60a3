//! Arbitrary bytes, read as lossy UTF-8, through the buildspec reader and the linter (alone and
//! with every cross-check): nothing may panic, and every reported position must exist in its file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtask::buildspec;
use xtask::diagnostic::SourceFile;
use xtask::lint::{self, Options, TemplatePath};
use xtask::runtime::Date;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = buildspec::parse(SourceFile::new("buildspec.yml", text.into_owned()));
    for cross_checks in [false, true] {
        let options = Options {
            cross_checks,
            template: TemplatePath::None,
            codebuild: TemplatePath::None,
            source_root: std::env::temp_dir().join("xtask-fuzz-no-source"),
            today: Date::new(2026, 11, 26),
        };
        for d in lint::lint(&parsed, &options) {
            let Some(loc) = &d.location else { continue };
            for pos in [loc.span.start, loc.span.end] {
                assert!(pos.line >= 1 && pos.col >= 1, "{d:?}");
                assert!(pos.offset <= loc.file.text.len(), "{d:?}");
                assert!(loc.file.text.is_char_boundary(pos.offset), "{d:?}");
            }
        }
    }
});
