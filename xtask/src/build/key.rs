//! The build key: a hash of everything that decides what a build produces. When it matches the
//! manifest and the zip is intact, the build is a no-op that starts no container.
//!
//! Secret values are left out (the manifest is not a place for even a hash of them): changing
//! only a secret does not rebuild; `--force` does.

use sha2::{Digest, Sha256};

pub struct KeyInputs<'a> {
    pub image_id: &'a str,
    pub buildspec_text: &'a str,
    pub source_digest: &'a str,
    pub variables: &'a [(String, String)],
    /// Values of `variables` that are secrets: only their names count.
    pub secrets: &'a [String],
    pub runtime: &'a str,
    pub compatible_runtimes: &'a [String],
    pub arch: &'a str,
    pub layer_name: &'a str,
    pub cache_enabled: bool,
    /// Whether the verification imports the layer (a build without it does not stand in for one
    /// with it).
    pub import_test: bool,
}

pub fn build_key(inputs: &KeyInputs) -> String {
    let mut h = Sha256::new();
    let mut field = |name: &str, value: &str| {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update([0]);
    };
    field("tool", env!("CARGO_PKG_VERSION"));
    // Bumped whenever the same tree would zip to other bytes (2: deflate level 6 → 5).
    field("zip-format", "2");
    field("image", inputs.image_id);
    field("buildspec", inputs.buildspec_text);
    field("source", inputs.source_digest);
    for (name, value) in inputs.variables {
        let secret = inputs.secrets.iter().any(|s| s == value);
        field(name, if secret { "(secret)" } else { value });
    }
    field("runtime", inputs.runtime);
    field("compatible-runtimes", &inputs.compatible_runtimes.join(","));
    field("arch", inputs.arch);
    field("layer", inputs.layer_name);
    field("cache", if inputs.cache_enabled { "on" } else { "off" });
    field("import-test", if inputs.import_test { "on" } else { "off" });
    crate::util::hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_that_changes_the_result_changes_the_key() {
        let inputs = KeyInputs {
            image_id: "sha256:1",
            buildspec_text: "version: 0.2",
            source_digest: "abc",
            variables: &[],
            secrets: &[],
            runtime: "python3.9",
            compatible_runtimes: &[],
            arch: "x86_64",
            layer_name: "deps",
            cache_enabled: true,
            import_test: true,
        };
        let key = build_key(&inputs);
        assert_eq!(key, build_key(&inputs));
        let without_import_test = KeyInputs {
            import_test: false,
            ..inputs
        };
        assert_ne!(key, build_key(&without_import_test));
        let without_cache = KeyInputs {
            cache_enabled: false,
            ..inputs
        };
        assert_ne!(key, build_key(&without_cache));
    }
}
