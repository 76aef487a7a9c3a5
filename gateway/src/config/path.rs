//! Key paths into the TOML tree and the record of where each key was written.

use std::collections::BTreeMap;
use std::fmt;

use super::error::Origin;

/// One step into the tree: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// A path such as `channels.namespaces[1].name`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KeyPath(Vec<Segment>);

impl KeyPath {
    pub(crate) fn key(&self, key: &str) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_owned()));
        next
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    pub(crate) fn parent(&self) -> Option<Self> {
        let (_, rest) = self.0.split_last()?;
        Some(Self(rest.to_vec()))
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub(crate) fn starts_with(&self, prefix: &Self) -> bool {
        self.0.starts_with(&prefix.0)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Where each key of the merged tree came from: the file, or an override.
#[derive(Debug, Default)]
pub(crate) struct Origins(BTreeMap<KeyPath, Origin>);

impl Origins {
    /// Records a key written in the file. An existing record wins, so the
    /// first definition of a key is the one reported.
    pub(crate) fn file(&mut self, path: KeyPath, origin: Origin) {
        self.0.entry(path).or_insert(origin);
    }

    /// Records an override that replaced `path` and everything beneath it.
    pub(crate) fn replaced_by_env(&mut self, path: &KeyPath, var: &str) {
        self.0.retain(|key, _| !key.starts_with(path));
        self.0.insert(path.clone(), Origin::Env { var: var.to_owned() });
    }

    /// Records a table an override had to create on the way to its key.
    pub(crate) fn created_by_env(&mut self, path: &KeyPath, var: &str) {
        self.0.entry(path.clone()).or_insert_with(|| Origin::Env { var: var.to_owned() });
    }

    /// Returns the origin of `path`, or of its nearest recorded ancestor.
    pub(crate) fn lookup(&self, path: &KeyPath) -> Option<Origin> {
        let mut cursor = Some(path.clone());
        while let Some(path) = cursor {
            if let Some(origin) = self.0.get(&path) {
                return Some(origin.clone());
            }
            cursor = path.parent();
        }
        None
    }
}

/// Converts a byte offset into a 1-based line and a 1-based column in chars.
pub(crate) fn line_column(text: &str, offset: usize) -> Origin {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |nl| nl + 1);
    Origin::File { line: before.matches('\n').count() + 1, column: before[line_start..].chars().count() + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_with_dots_and_indices() {
        let path = KeyPath::default().key("channels").key("namespaces").index(1).key("name");
        assert_eq!(path.to_string(), "channels.namespaces[1].name");
        assert_eq!(path.parent().unwrap().to_string(), "channels.namespaces[1]");
    }

    #[test]
    fn lookup_falls_back_to_the_nearest_ancestor() {
        let mut origins = Origins::default();
        let server = KeyPath::default().key("server");
        origins.file(server.clone(), Origin::File { line: 2, column: 1 });
        assert_eq!(origins.lookup(&server.key("nope")), Some(Origin::File { line: 2, column: 1 }));
        origins.replaced_by_env(&server, "SWITCHBOARD_X__Y");
        assert_eq!(origins.lookup(&server.key("nope")), Some(Origin::Env { var: "SWITCHBOARD_X__Y".into() }));
    }

    #[test]
    fn line_column_counts_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), Origin::File { line: 1, column: 1 });
        assert_eq!(line_column(text, 6), Origin::File { line: 2, column: 1 });
        // The column counts chars, not bytes: `=` follows a two-byte `é`.
        assert_eq!(line_column(text, 10), Origin::File { line: 2, column: 4 });
    }
}
