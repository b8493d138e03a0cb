//! Image names to local binaries: this cluster has no container runtime, so "pulling" an image
//! means finding its binary in a TOML file such as
//!
//! ```toml
//! [images]
//! "flotilla/testpod" = "/root/.cache/flotilla/target/debug/flotilla-testpod"
//! ```
//!
//! The file is read again for every container start, so a test may add a mapping while the
//! cluster runs.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageMapFile {
    #[serde(default)]
    images: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ImageMap {
    path: PathBuf,
    images: BTreeMap<String, PathBuf>,
}

impl ImageMap {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(path, &text)
    }

    fn parse(path: &Path, text: &str) -> Result<Self> {
        let file: ImageMapFile = toml::from_str(text).map_err(|e| Error::ImageMap {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(ImageMap {
            path: path.to_owned(),
            images: file.images,
        })
    }

    /// The binary for `image`: an exact entry wins, then the entry for the image without its tag
    /// or digest, so `flotilla/testpod:0.1` finds `flotilla/testpod`.
    pub fn resolve(&self, image: &str) -> Result<&Path> {
        self.images
            .get(image)
            .or_else(|| self.images.get(strip_tag(image)))
            .map(PathBuf::as_path)
            .ok_or_else(|| Error::ImageNotMapped {
                image: image.to_owned(),
                map: self.path.clone(),
            })
    }
}

/// `repo/name:tag` or `repo/name@sha256:…` → `repo/name`; a `:` in a registry host
/// (`localhost:5000/name`) is not a tag.
fn strip_tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].find(':') {
        Some(colon) => &image[..last_slash + colon],
        None => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map() -> ImageMap {
        ImageMap::parse(
            Path::new("map.toml"),
            r#"
            [images]
            "flotilla/testpod" = "/bin/testpod"
            "flotilla/testpod:old" = "/bin/testpod-old"
            "localhost:5000/game" = "/bin/game"
            "#,
        )
        .expect("valid map")
    }

    #[test]
    fn exact_tag_entry_wins_over_untagged_entry() {
        assert_eq!(
            map().resolve("flotilla/testpod:old").ok(),
            Some(Path::new("/bin/testpod-old"))
        );
    }

    #[test]
    fn tag_and_digest_fall_back_to_untagged_entry() {
        let map = map();
        assert_eq!(
            map.resolve("flotilla/testpod:1.2").ok(),
            Some(Path::new("/bin/testpod"))
        );
        assert_eq!(
            map.resolve("flotilla/testpod@sha256:abc").ok(),
            Some(Path::new("/bin/testpod"))
        );
        assert_eq!(
            map.resolve("localhost:5000/game:v3").ok(),
            Some(Path::new("/bin/game"))
        );
    }

    #[test]
    fn unmapped_image_names_the_image_and_the_map() {
        let err = map().resolve("nginx:1.27").expect_err("not mapped");
        assert_eq!(err.waiting_reason(), "ErrImagePull");
        assert_eq!(
            err.to_string(),
            r#"image "nginx:1.27" has no entry in the image map map.toml"#
        );
    }

    #[test]
    fn malformed_map_is_an_error_not_a_panic() {
        let err = ImageMap::parse(Path::new("m.toml"), "[images]\nx = 3").expect_err("bad type");
        assert!(err.to_string().starts_with("image map m.toml:"), "{err}");
    }
}
