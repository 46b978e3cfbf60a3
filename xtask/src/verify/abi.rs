//! Which Python runtimes and CPUs a file fits, from its name or its wheel's tags: the ABI tag of a
//! CPython extension module (`.cpython-39-x86_64-linux-gnu.so`, `.abi3.so`) and the `Tag:` lines of
//! a `*.dist-info/WHEEL` (`cp39-cp39-manylinux_2_17_x86_64`), matched the way pip matches them.

use crate::runtime::Runtime;

/// The ABI an extension module's file name declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionAbi {
    /// `.cpython-39-x86_64-linux-gnu.so`: one CPython version (`t` marks a free-threaded build).
    CPython {
        version: (u32, u32),
        free_threaded: bool,
        platform: String,
    },
    /// `.abi3.so`: the stable ABI, loads on the version it was built for and later.
    Abi3,
    /// `.so` with no tag, or a tag this tool does not know: cannot be checked from the name.
    Untagged,
}

/// The ABI tag of an extension module's file name; `None` for files that are not `*.so`.
pub fn extension_abi(file_name: &str) -> Option<ExtensionAbi> {
    let stem = file_name.strip_suffix(".so")?;
    let Some((_, tag)) = stem.rsplit_once('.') else {
        return Some(ExtensionAbi::Untagged);
    };
    if tag == "abi3" {
        return Some(ExtensionAbi::Abi3);
    }
    let Some(rest) = tag.strip_prefix("cpython-") else {
        return Some(ExtensionAbi::Untagged);
    };
    let (version, platform) = rest.split_once('-').unwrap_or((rest, ""));
    let (digits, free_threaded) = match version.strip_suffix('t') {
        Some(digits) => (digits, true),
        None => (version, false),
    };
    match split_version(digits) {
        Some(version) => Some(ExtensionAbi::CPython {
            version,
            free_threaded,
            platform: platform.to_string(),
        }),
        None => Some(ExtensionAbi::Untagged),
    }
}

/// `39` → `(3, 9)`, `313` → `(3, 13)`.
fn split_version(digits: &str) -> Option<(u32, u32)> {
    if digits.len() < 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (major, minor) = digits.split_at(1);
    Some((major.parse().ok()?, minor.parse().ok()?))
}

impl ExtensionAbi {
    /// Whether a module with this tag loads on `runtime` (Lambda runs the default, GIL build).
    pub fn fits(&self, runtime: &Runtime) -> bool {
        match self {
            ExtensionAbi::CPython {
                version,
                free_threaded,
                ..
            } => *version == runtime.python && !free_threaded,
            ExtensionAbi::Abi3 | ExtensionAbi::Untagged => true,
        }
    }

    /// `CPython 3.9` for messages.
    pub fn describe(&self) -> String {
        match self {
            ExtensionAbi::CPython {
                version,
                free_threaded,
                ..
            } => format!(
                "CPython {}.{}{}",
                version.0,
                version.1,
                if *free_threaded {
                    " (free-threaded)"
                } else {
                    ""
                }
            ),
            ExtensionAbi::Abi3 => "the stable ABI (abi3)".to_string(),
            ExtensionAbi::Untagged => "an unknown ABI".to_string(),
        }
    }
}

/// The `Tag:` values of a `WHEEL` file, each compressed tag set (`py2.py3-none-any`) expanded.
pub fn wheel_tags(wheel_file: &str) -> Vec<String> {
    let mut tags = Vec::new();
    for line in wheel_file.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if !key.trim().eq_ignore_ascii_case("tag") {
            continue;
        }
        let parts: Vec<&str> = value.trim().splitn(3, '-').collect();
        let [pythons, abis, platforms] = parts.as_slice() else {
            continue;
        };
        for python in pythons.split('.') {
            for abi in abis.split('.') {
                for platform in platforms.split('.') {
                    tags.push(format!("{python}-{abi}-{platform}"));
                }
            }
        }
    }
    tags
}

/// Whether the single wheel tag `tag` installs on `runtime` on `arch` (`x86_64`/`arm64`): pip's
/// rules for CPython on manylinux, with the runtime's glibc as the manylinux ceiling.
pub fn tag_fits(tag: &str, runtime: &Runtime, arch: &str) -> bool {
    let parts: Vec<&str> = tag.splitn(3, '-').collect();
    let [python, abi, platform] = parts.as_slice() else {
        return false;
    };
    python_and_abi_fit(python, abi, runtime) && platform_fits(platform, runtime, arch)
}

fn python_and_abi_fit(python: &str, abi: &str, runtime: &Runtime) -> bool {
    let (major, minor) = runtime.python;
    let (kind, version) = if let Some(v) = python.strip_prefix("cp") {
        ("cp", v)
    } else if let Some(v) = python.strip_prefix("py") {
        ("py", v)
    } else {
        return false;
    };
    // `py3` / `cp3` name a major version only; `py39` / `cp39` a minor one.
    let version = if version == major.to_string() {
        None
    } else {
        match split_version(version) {
            Some(v) => Some(v),
            None => return false,
        }
    };
    if version.is_some_and(|(m, _)| m != major) {
        return false;
    }
    let not_newer = version.is_none_or(|(_, m)| m <= minor);
    let exact = version.is_none_or(|(_, m)| m == minor);
    match (kind, abi) {
        // pip: cp3X-abi3 for every X up to the running version; py3X-none for the same range.
        (_, "abi3") => kind == "cp" && version.is_some() && not_newer,
        ("cp", "none") => exact,
        ("py", "none") => not_newer,
        ("cp", abi) => exact && abi == runtime.cpython_tag(),
        _ => false,
    }
}

fn platform_fits(platform: &str, runtime: &Runtime, arch: &str) -> bool {
    if platform == "any" {
        return true;
    }
    let machine = match arch {
        "x86_64" => "x86_64",
        "arm64" => "aarch64",
        _ => return false,
    };
    let Some(rest) = platform.strip_suffix(machine) else {
        return false;
    };
    let Some(rest) = rest.strip_suffix('_') else {
        return false;
    };
    let glibc = match rest {
        "linux" => return true,
        "manylinux1" => (2, 5),
        "manylinux2010" => (2, 12),
        "manylinux2014" => (2, 17),
        _ => {
            let Some(version) = rest.strip_prefix("manylinux_") else {
                // musllinux_*, macosx_*, win_* …
                return false;
            };
            let Some((major, minor)) = version.split_once('_') else {
                return false;
            };
            match (major.parse(), minor.parse()) {
                (Ok(major), Ok(minor)) => (major, minor),
                _ => return false,
            }
        }
    };
    glibc <= runtime.glibc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(id: &str) -> &'static Runtime {
        Runtime::find(id).unwrap()
    }

    #[test]
    fn extension_names() {
        let cp39 = extension_abi("_foo.cpython-39-x86_64-linux-gnu.so").unwrap();
        assert!(cp39.fits(rt("python3.9")));
        assert!(!cp39.fits(rt("python3.11")));
        let cp313t = extension_abi("_foo.cpython-313t-x86_64-linux-gnu.so").unwrap();
        assert!(!cp313t.fits(rt("python3.13")));
        assert_eq!(
            extension_abi("_foo.abi3.so"),
            Some(ExtensionAbi::Abi3),
            "abi3"
        );
        assert_eq!(extension_abi("libfoo.so"), Some(ExtensionAbi::Untagged));
        assert_eq!(extension_abi("libfoo.so.1"), None);
        assert_eq!(extension_abi("foo.py"), None);
    }

    #[test]
    fn compressed_tag_sets_expand() {
        let wheel = "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py2.py3-none-any\n\
                     Tag: cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64\n";
        assert_eq!(
            wheel_tags(wheel),
            vec![
                "py2-none-any",
                "py3-none-any",
                "cp39-cp39-manylinux_2_17_x86_64",
                "cp39-cp39-manylinux2014_x86_64"
            ]
        );
    }

    #[test]
    fn tags_fit_like_pip() {
        let (py39, py311, py312) = (rt("python3.9"), rt("python3.11"), rt("python3.12"));
        assert!(tag_fits("py3-none-any", py39, "arm64"));
        assert!(tag_fits("cp39-cp39-manylinux_2_17_x86_64", py39, "x86_64"));
        assert!(!tag_fits(
            "cp39-cp39-manylinux_2_17_x86_64",
            py311,
            "x86_64"
        ));
        assert!(!tag_fits("cp39-cp39-manylinux_2_17_x86_64", py39, "arm64"));
        assert!(tag_fits("cp38-abi3-manylinux2014_aarch64", py311, "arm64"));
        assert!(!tag_fits(
            "cp312-abi3-manylinux2014_x86_64",
            py311,
            "x86_64"
        ));
        assert!(!tag_fits(
            "cp311-cp311-manylinux_2_28_x86_64",
            py311,
            "x86_64"
        ));
        assert!(tag_fits(
            "cp312-cp312-manylinux_2_28_x86_64",
            py312,
            "x86_64"
        ));
        assert!(!tag_fits(
            "cp312-cp312-musllinux_1_1_x86_64",
            py312,
            "x86_64"
        ));
        assert!(!tag_fits("cp39-cp39-macosx_11_0_arm64", py39, "arm64"));
        assert!(tag_fits("py39-none-any", py311, "x86_64"));
        assert!(!tag_fits("py312-none-any", py311, "x86_64"));
        assert!(!tag_fits("py2-none-any", py39, "x86_64"));
        assert!(tag_fits("cp311-none-any", py311, "x86_64"));
    }
}
