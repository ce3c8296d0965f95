//! Class names: a checkpoint's own (`res2net.labels` metadata, a JSON array), ImageNet-1k's for
//! 1000-class models, otherwise `class N`.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Metadata key of a checkpoint's own class names.
pub const METADATA_KEY: &str = "res2net.labels";

/// ImageNet-1k class names (first synonym of each WordNet synset), in class-index order.
const IMAGENET: &str = include_str!("imagenet_classes.txt");

/// The names of `classes` classes for a checkpoint with metadata `meta`.
pub fn class_names(meta: &HashMap<String, String>, classes: usize) -> Result<Vec<String>> {
    if let Some(json) = meta.get(METADATA_KEY) {
        let names: Vec<String> = serde_json::from_str(json).map_err(|e| {
            Error::Config(format!(
                "'{METADATA_KEY}' metadata: expected a JSON array of strings, found: {e}"
            ))
        })?;
        if let Some((i, name)) = names
            .iter()
            .enumerate()
            .find(|(_, n)| n.chars().any(char::is_control))
        {
            return Err(Error::Config(format!(
                "'{METADATA_KEY}' metadata: expected printable class names, found control characters in name {i} (\"{}\")",
                crate::error::one_line(name)
            )));
        }
        if names.len() != classes {
            return Err(Error::Config(format!(
                "'{METADATA_KEY}' metadata: expected {classes} names, found {}",
                names.len()
            )));
        }
        return Ok(names);
    }
    if classes == 1000 {
        return Ok(IMAGENET.lines().map(str::to_string).collect());
    }
    Ok((0..classes).map(|i| format!("class {i}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imagenet_names_ship_with_the_crate() {
        let names = class_names(&HashMap::new(), 1000).unwrap();
        assert_eq!(names.len(), 1000);
        assert_eq!(names[0], "tench");
        assert_eq!(names[999], "toilet tissue");
    }

    #[test]
    fn metadata_names_win_and_are_checked() {
        let meta = [(METADATA_KEY.to_string(), "[\"a\",\"b\"]".to_string())].into();
        assert_eq!(class_names(&meta, 2).unwrap(), ["a", "b"]);
        assert!(class_names(&meta, 3)
            .unwrap_err()
            .to_string()
            .contains("expected 3 names, found 2"));
        assert_eq!(class_names(&HashMap::new(), 3).unwrap()[2], "class 2");
        let meta = [(
            METADATA_KEY.to_string(),
            "[\"ok\",\"bad\\n\\u001b[2J\"]".to_string(),
        )]
        .into();
        let e = class_names(&meta, 2).unwrap_err().to_string();
        assert!(
            e.contains("control characters in name 1") && !e.contains('\n'),
            "{e}"
        );
    }
}
