//! The Lambda Python runtimes the tool targets: one table, the single source of truth for their
//! OS, glibc, build image and deprecation date.
//!
//! Sources: AWS Lambda developer guide, "Lambda runtimes" (supported runtimes table and the
//! deprecation schedule) and "Building with Python" (SAM build images); glibc from the Amazon Linux
//! 2 (2.26) and Amazon Linux 2023 (2.34) release notes. Dates are AWS's projected deprecation
//! dates as published in 2025-2026; python3.9 was deprecated on 2025-12-15.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    AmazonLinux2,
    AmazonLinux2023,
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Os::AmazonLinux2 => "Amazon Linux 2",
            Os::AmazonLinux2023 => "Amazon Linux 2023",
        })
    }
}

/// A calendar date, ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl Date {
    pub const fn new(year: i32, month: u32, day: u32) -> Self {
        Date { year, month, day }
    }

    /// Today in UTC.
    pub fn today() -> Self {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self::from_unix_days((secs / 86_400) as i64)
    }

    /// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    pub fn from_unix_days(days: i64) -> Self {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Runtime {
    /// Lambda's identifier, `python3.9`.
    pub id: &'static str,
    /// `(3, 9)`
    pub python: (u32, u32),
    pub os: Os,
    /// Highest glibc symbol version an extension may need: (major, minor).
    pub glibc: (u32, u32),
    pub deprecation: Date,
}

pub const ARCHITECTURES: &[&str] = &["x86_64", "arm64"];

/// Supported Lambda Python runtimes, oldest first.
pub const RUNTIMES: &[Runtime] = &[
    Runtime {
        id: "python3.9",
        python: (3, 9),
        os: Os::AmazonLinux2,
        glibc: (2, 26),
        deprecation: Date::new(2025, 12, 15),
    },
    Runtime {
        id: "python3.10",
        python: (3, 10),
        os: Os::AmazonLinux2,
        glibc: (2, 26),
        deprecation: Date::new(2026, 10, 31),
    },
    Runtime {
        id: "python3.11",
        python: (3, 11),
        os: Os::AmazonLinux2,
        glibc: (2, 26),
        deprecation: Date::new(2027, 6, 30),
    },
    Runtime {
        id: "python3.12",
        python: (3, 12),
        os: Os::AmazonLinux2023,
        glibc: (2, 34),
        deprecation: Date::new(2028, 10, 31),
    },
    Runtime {
        id: "python3.13",
        python: (3, 13),
        os: Os::AmazonLinux2023,
        glibc: (2, 34),
        deprecation: Date::new(2029, 6, 30),
    },
    // UNCONFIRMED date: AWS lists python3.14 (AL2023, Nov 2025); its projected date varies by page.
    Runtime {
        id: "python3.14",
        python: (3, 14),
        os: Os::AmazonLinux2023,
        glibc: (2, 34),
        deprecation: Date::new(2029, 6, 30),
    },
];

impl Runtime {
    pub fn find(id: &str) -> Option<&'static Runtime> {
        RUNTIMES.iter().find(|r| r.id == id)
    }

    /// The runtime for a Python version written as `3.9`.
    pub fn for_python_version(version: &str) -> Option<&'static Runtime> {
        Self::find(&format!("python{version}"))
    }

    /// `3.9`
    pub fn python_version(&self) -> String {
        format!("{}.{}", self.python.0, self.python.1)
    }

    /// The SAM build image local builds default to (multi-arch; `latest-<arch>` tags also exist).
    pub fn build_image(&self) -> String {
        format!("public.ecr.aws/sam/build-{}", self.id)
    }

    /// The SAM build image for one architecture (`x86_64` or `arm64`): the `latest-<arch>` tag.
    pub fn build_image_for(&self, arch: &str) -> String {
        format!("{}:latest-{arch}", self.build_image())
    }

    /// The CPython tag wheels and extension modules use for this runtime: `cp39`, `cp312`.
    pub fn cpython_tag(&self) -> String {
        format!("cp{}{}", self.python.0, self.python.1)
    }

    pub fn is_deprecated_on(&self, today: Date) -> bool {
        today >= self.deprecation
    }

    /// The newest runtime not deprecated on `today`.
    pub fn newest_supported(today: Date) -> Option<&'static Runtime> {
        RUNTIMES.iter().rev().find(|r| !r.is_deprecated_on(today))
    }
}

/// The Python version an image name implies, when it names one: SAM build images
/// (`public.ecr.aws/sam/build-python3.9`) and Lambda base images (`public.ecr.aws/lambda/python:3.9`).
pub fn python_of_image(image: &str) -> Option<String> {
    let last = image.rsplit('/').next()?;
    let version = if let Some(rest) = last.strip_prefix("build-python") {
        rest.split(':').next()?
    } else if let Some(rest) = last.strip_prefix("python:") {
        rest.split('-').next()?
    } else {
        return None;
    };
    let mut parts = version.split('.');
    let valid = parts.next().is_some_and(|p| p == "3")
        && parts
            .next()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_none();
    valid.then(|| version.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(Date::from_unix_days(0), Date::new(1970, 1, 1));
        assert_eq!(Date::from_unix_days(20_437), Date::new(2025, 12, 15));
        assert_eq!(Date::from_unix_days(11_016), Date::new(2000, 2, 29));
    }

    #[test]
    fn python39_is_deprecated_from_its_date() {
        let py39 = Runtime::find("python3.9").unwrap();
        assert!(!py39.is_deprecated_on(Date::new(2025, 12, 14)));
        assert!(py39.is_deprecated_on(Date::new(2025, 12, 15)));
        assert_eq!(
            Runtime::newest_supported(Date::new(2026, 1, 1)).unwrap().id,
            "python3.14"
        );
    }

    #[test]
    fn every_runtime_from_3_9_to_3_13_is_known_with_its_glibc() {
        for minor in 9..=13 {
            let runtime = Runtime::for_python_version(&format!("3.{minor}")).unwrap();
            let expected = if minor >= 12 { (2, 34) } else { (2, 26) };
            assert_eq!(runtime.glibc, expected, "{}", runtime.id);
            assert_eq!(
                runtime.build_image(),
                format!("public.ecr.aws/sam/build-python3.{minor}")
            );
        }
    }

    #[test]
    fn image_names_imply_python_versions() {
        assert_eq!(
            python_of_image("public.ecr.aws/sam/build-python3.9").as_deref(),
            Some("3.9")
        );
        assert_eq!(
            python_of_image("public.ecr.aws/sam/build-python3.12:latest-arm64").as_deref(),
            Some("3.12")
        );
        assert_eq!(
            python_of_image("public.ecr.aws/lambda/python:3.11-x86_64").as_deref(),
            Some("3.11")
        );
        assert_eq!(python_of_image("aws/codebuild/standard:7.0"), None);
        assert_eq!(python_of_image("build-python3"), None);
    }
}
