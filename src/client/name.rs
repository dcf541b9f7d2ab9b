//! The manifest name a push uses: `--name`, or else the packed directory's own name (its
//! last path component, after resolving `.` and `..`), so pushing `images/debian-12` names
//! the manifest `debian-12` and pushing the same directory again replaces it.

use std::path::Path;

use super::error::ClientError;
use crate::store::ManifestName;

/// `given` if there is one, else the name of `dir`; checked against the API's rule.
pub fn manifest_name(given: Option<&str>, dir: &Path) -> Result<ManifestName, ClientError> {
    if let Some(name) = given {
        return ManifestName::parse(name).map_err(|reason| ClientError::Name {
            name: name.to_owned(),
            reason,
        });
    }
    let no_default = |reason: String| ClientError::NoDefaultName {
        dir: dir.to_owned(),
        reason,
    };
    // `.`, `..` and `x/..` have no name of their own: ask the file system.
    let resolved;
    let named = match dir.file_name() {
        Some(_) if !dir.ends_with("..") => dir,
        _ => {
            resolved = dir
                .canonicalize()
                .map_err(|e| no_default(format!("cannot resolve it: {e}")))?;
            &resolved
        }
    };
    let name = named
        .file_name()
        .ok_or_else(|| no_default("it has no name".into()))?;
    let name = name
        .to_str()
        .ok_or_else(|| no_default("its name is not UTF-8".into()))?;
    ManifestName::parse(name).map_err(|e| no_default(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_directory_names_the_manifest_unless_a_name_is_given() {
        let named =
            |given, dir: &str| manifest_name(given, Path::new(dir)).map(|n| n.as_str().to_owned());
        assert_eq!(named(None, "/tmp/debian-12.img").unwrap(), "debian-12.img");
        assert_eq!(named(None, "images/debian_12/").unwrap(), "debian_12");
        assert_eq!(named(Some("other"), "/tmp/debian-12").unwrap(), "other");
        let here = std::env::current_dir().unwrap();
        let here = here.file_name().unwrap().to_str().unwrap();
        assert_eq!(named(None, ".").unwrap(), here);
    }

    #[test]
    fn names_the_api_refuses_are_refused_with_the_reason() {
        let error = |given, dir: &str| {
            manifest_name(given, Path::new(dir))
                .unwrap_err()
                .to_string()
        };
        assert!(error(None, "/tmp/my image").contains("give --name"));
        assert!(error(None, "/tmp/.hidden").contains("cannot start with '.'"));
        assert!(error(None, "/").contains("give --name"));
        assert!(error(Some("a/b"), "/tmp/x").contains("\"a/b\""));
        assert!(error(Some(&"x".repeat(129)), "/tmp/x").contains("at most 128"));
    }
}
