//! Tests that keep the shipped config files in step with the schema.

use std::collections::BTreeSet;

use super::{Config, MapEnv, NamespaceConfig};

const REFERENCE: &str = include_str!("../../../config/gateway.toml");
const CHAT_EXAMPLE: &str = include_str!("../../../config/examples/chat.toml");
/// Header of the commented namespace example in the reference file.
const NAMESPACE_EXAMPLE_HEADER: &str = "# [[channels.namespaces]]";

/// The keys a file sets: `(table path, key)` for each `key = …` line.
#[derive(Default)]
struct Keys {
    set: BTreeSet<(String, String)>,
    /// `[[…]]` headers, commented or not.
    array_tables: BTreeSet<String>,
    /// Keys of the commented namespace example.
    namespace_example: BTreeSet<String>,
}

fn key_of(line: &str) -> Option<String> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    bare.then(|| key.to_owned())
}

fn header_of(line: &str) -> Option<(String, bool)> {
    if let Some(inner) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
        return Some((inner.trim().to_owned(), true));
    }
    let inner = line.strip_prefix('[')?.strip_suffix(']')?;
    Some((inner.trim().to_owned(), false))
}

fn scan(text: &str) -> Keys {
    let mut keys = Keys::default();
    let mut table = String::new();
    let mut in_example = false;
    for line in text.lines().map(str::trim) {
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim();
            if let Some((header, true)) = header_of(comment) {
                // A commented `[[…]]` example documents an array of tables
                // that is empty by default.
                keys.array_tables.insert(header);
            }
            if line == NAMESPACE_EXAMPLE_HEADER {
                in_example = true;
                keys.array_tables.insert("channels.namespaces".into());
            } else if comment.is_empty() || !in_example {
                in_example &= !comment.is_empty();
            } else if let Some(key) = key_of(comment) {
                keys.namespace_example.insert(key);
            }
            continue;
        }
        in_example = false;
        if let Some((header, is_array)) = header_of(line) {
            if is_array {
                keys.array_tables.insert(header.clone());
            }
            table = header;
        } else if let Some(key) = key_of(line) {
            keys.set.insert((table.clone(), key));
        }
    }
    keys
}

/// Every leaf of `value` as `(table path, key, value)`.
fn leaves(value: &toml::Value, table: &str, out: &mut Vec<(String, String, toml::Value)>) {
    let toml::Value::Table(entries) = value else {
        return;
    };
    for (key, value) in entries {
        match value {
            toml::Value::Table(_) => {
                let path = if table.is_empty() { key.clone() } else { format!("{table}.{key}") };
                leaves(value, &path, out);
            }
            _ => out.push((table.to_owned(), key.clone(), value.clone())),
        }
    }
}

#[test]
fn reference_config_is_exactly_the_defaults() {
    let config = Config::from_toml_str(REFERENCE, &MapEnv::new()).unwrap();
    assert_eq!(config, Config::default());
    config.validate().unwrap();
}

#[test]
fn reference_config_documents_every_key() {
    let keys = scan(REFERENCE);
    let defaults = toml::Value::try_from(Config::default()).unwrap();
    let mut all = Vec::new();
    leaves(&defaults, "", &mut all);
    assert!(all.len() > 40, "walked only {} keys", all.len());
    for (table, key, value) in all {
        let path = if table.is_empty() { key.clone() } else { format!("{table}.{key}") };
        let as_key = keys.set.contains(&(table, key));
        // An empty array of tables is documented by a (commented) `[[…]]` example.
        let as_array_table = value.as_array().is_some_and(Vec::is_empty) && keys.array_tables.contains(&path);
        assert!(as_key || as_array_table, "config/gateway.toml does not document `{path}`");
    }
}

#[test]
fn reference_config_documents_every_namespace_key() {
    let keys = scan(REFERENCE);
    let namespace = toml::Value::try_from(NamespaceConfig::default()).unwrap();
    for key in namespace.as_table().unwrap().keys() {
        let shown = keys.namespace_example.contains(key) || keys.set.contains(&("channels".to_owned(), key.clone()));
        assert!(shown, "config/gateway.toml does not document `channels.namespaces[].{key}`");
    }
    assert!(keys.namespace_example.contains("name"));
}

#[test]
fn every_reference_key_has_a_documented_default() {
    let mut comment: Vec<&str> = Vec::new();
    for line in REFERENCE.lines().map(str::trim) {
        if let Some(text) = line.strip_prefix('#') {
            comment.push(text);
            continue;
        }
        if let Some(key) = key_of(line) {
            let doc = comment.join(" ");
            assert!(doc.contains("Default"), "`{key}` has no \"Default …\" in its comment");
        }
        comment.clear();
    }
}

#[test]
fn reference_namespace_example_parses_and_validates_when_uncommented() {
    let example: String = REFERENCE
        .lines()
        .skip_while(|line| line.trim() != NAMESPACE_EXAMPLE_HEADER)
        .take_while(|line| line.trim().starts_with('#') && line.trim() != "#")
        .map(|line| format!("{}\n", line.trim().trim_start_matches('#').trim()))
        .collect();
    assert!(example.starts_with("[[channels.namespaces]]\nname = "), "{example}");
    let text = format!("{REFERENCE}\n{example}");
    let config = Config::from_toml_str(&text, &MapEnv::new()).unwrap();
    config.validate().unwrap();
    assert_eq!(config.channels.namespaces.len(), 1);
}

#[test]
fn chat_example_validates() {
    let config = Config::from_toml_str(CHAT_EXAMPLE, &MapEnv::new()).unwrap();
    config.validate().unwrap();
    let chat = config.channels.resolve("chat:lobby").expect("chat namespace");
    assert!(chat.history_enabled());
    assert_eq!((chat.history_size, chat.history_ttl_secs), (100, 300));
    assert!(chat.force_recovery && chat.presence && chat.join_leave);
    assert!(chat.allow_publish_for_subscriber);
    assert!(chat.allow_history_for_subscriber && chat.allow_presence_for_subscriber);
    assert_eq!(config.channels.resolve("news:1"), None);
}

#[test]
fn a_redis_prefix_with_braces_is_refused() {
    // Keys end in a `{channel}` Cluster hash tag: a brace in the prefix
    // would become the tag instead.
    let text = "[engine]\ntype = \"redis\"\nredis_prefix = \"sb{1}\"\n";
    let config = Config::from_toml_str(text, &MapEnv::new()).unwrap();
    let err = config.validate().unwrap_err().to_string();
    assert!(err.contains("engine.redis_prefix") && err.contains("must not contain '{' or '}'"), "{err}");
    let text = "[engine]\ntype = \"redis\"\nmax_queued_membership_writes = 0\n";
    let err = Config::from_toml_str(text, &MapEnv::new()).unwrap().validate().unwrap_err().to_string();
    assert!(err.contains("engine.max_queued_membership_writes"), "{err}");
}
