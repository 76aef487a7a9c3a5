//! Turning TOML text plus environment overrides into a [`Config`].
//!
//! The text is parsed into a spanned tree first, which gives syntax errors a
//! position and records where every key was written. Overrides are applied
//! to the plain tree, which is then deserialised. serde stops at the first
//! problem and a `toml::Value` has no spans, so deserialisation runs on the
//! merged tree re-encoded as text: the error's span in that text names the
//! key path, the recorded origins give the operator's line or variable, and
//! removing the offending key and retrying reports every problem in one go.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Config;
use super::env::{EnvSource, ProcessEnv, apply_overrides};
use super::error::{ConfigError, FieldError, Origin};
use super::path::{KeyPath, Origins, Segment, line_column};

/// Problems reported from one parse before giving up: past this the rest is
/// most likely fallout from the first ones.
const MAX_PARSE_ERRORS: usize = 32;

impl Config {
    /// Parses `text` as a config file with `env`'s overrides applied on top.
    ///
    /// Only the shape is checked here (syntax, known keys, types); call
    /// [`Config::validate`] for the rules between values.
    pub fn from_toml_str(text: &str, env: &dyn EnvSource) -> Result<Config, ConfigError> {
        let document = DeTable::parse(text).map_err(|error| {
            let origin = error.span().map(|span| line_column(text, span.start));
            ConfigError::Parse(vec![FieldError::new("", error.message()).with_origin(origin)])
        })?;
        let mut origins = Origins::default();
        record_origins(text, document.get_ref(), &KeyPath::default(), &mut origins);
        let mut tree = toml::Table::deserialize(toml::de::Deserializer::from(document))
            .map_err(|error| ConfigError::Parse(vec![FieldError::new("", error.message())]))?;

        let mut errors = apply_overrides(&mut tree, env, &mut origins);
        let config = deserialize_reporting_all(tree, &origins, &mut errors);
        errors.sort_by(|a, b| reading_order(a).cmp(&reading_order(b)));
        match config {
            Some(config) if errors.is_empty() => Ok(config),
            _ => Err(ConfigError::Parse(errors)),
        }
    }

    /// Reads and parses the file at `path` with the process environment's
    /// overrides applied. Does not validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        Config::from_toml_str(&text, &ProcessEnv)
    }

    /// Loads the file at `path`, or the defaults when there is none, with the
    /// process environment's overrides applied, and validates the result.
    pub fn load_validated(path: Option<&Path>) -> Result<Config, ConfigError> {
        let config = match path {
            Some(path) => Config::load(path)?,
            None => Config::from_toml_str("", &ProcessEnv)?,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Orders problems as an operator reads them: down the file, then by variable.
fn reading_order(error: &FieldError) -> (u8, usize, usize, &str) {
    match &error.origin {
        Some(Origin::File { line, column }) => (0, *line, *column, ""),
        Some(Origin::Env { var }) => (1, 0, 0, var),
        None => (2, 0, 0, ""),
    }
}

/// Records the position of every key (and array element) in the file.
fn record_origins(text: &str, table: &DeTable<'_>, parent: &KeyPath, origins: &mut Origins) {
    for (key, value) in table {
        let path = parent.key(key.get_ref());
        origins.file(path.clone(), line_column(text, key.span().start));
        record_value_origins(text, value, &path, origins);
    }
}

fn record_value_origins(text: &str, value: &Spanned<DeValue<'_>>, path: &KeyPath, origins: &mut Origins) {
    match value.get_ref() {
        DeValue::Table(table) => record_origins(text, table, path, origins),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let path = path.index(index);
                origins.file(path.clone(), line_column(text, item.span().start));
                record_value_origins(text, item, &path, origins);
            }
        }
        _ => {}
    }
}

/// Deserialises `tree`, pushing one error per offending key onto `errors`.
/// Returns the config only when deserialisation succeeded.
fn deserialize_reporting_all(mut tree: toml::Table, origins: &Origins, errors: &mut Vec<FieldError>) -> Option<Config> {
    loop {
        let text = match toml::to_string(&tree) {
            Ok(text) => text,
            Err(error) => {
                errors.push(FieldError::new("", format!("cannot re-encode config: {error}")));
                return None;
            }
        };
        let error = match toml::from_str::<Config>(&text) {
            Ok(config) => return Some(config),
            Err(error) => error,
        };
        let path = error.span().and_then(|span| locate(&text, span.start));
        let message = error.message().replace("unknown field", "unknown key");
        let Some(path) = path else {
            errors.push(FieldError::new("", message));
            return None;
        };
        errors.push(FieldError::new(path.to_string(), message).with_origin(origins.lookup(&path)));
        if errors.len() >= MAX_PARSE_ERRORS || !remove(&mut tree, &path) {
            return None;
        }
    }
}

/// Returns the path of the deepest key whose key or value contains `offset`.
fn locate(text: &str, offset: usize) -> Option<KeyPath> {
    let document = DeTable::parse(text).ok()?;
    locate_in_table(document.get_ref(), offset, &KeyPath::default())
}

fn locate_in_table(table: &DeTable<'_>, offset: usize, parent: &KeyPath) -> Option<KeyPath> {
    table.iter().find_map(|(key, value)| {
        let path = parent.key(key.get_ref());
        if key.span().contains(&offset) {
            return Some(path);
        }
        locate_in_value(value, offset, path)
    })
}

fn locate_in_value(value: &Spanned<DeValue<'_>>, offset: usize, path: KeyPath) -> Option<KeyPath> {
    // Container spans do not always cover their body (a `[table]` header is
    // apart from its keys), so children are searched before the span is used.
    let inner = match value.get_ref() {
        DeValue::Table(table) => locate_in_table(table, offset, &path),
        DeValue::Array(items) => {
            items.iter().enumerate().find_map(|(index, item)| locate_in_value(item, offset, path.index(index)))
        }
        _ => None,
    };
    inner.or_else(|| value.span().contains(&offset).then_some(path))
}

/// Removes the value at `path` so a retry can find the next problem. An
/// array element is never removed alone, since the indices after it would
/// then name different elements than the file does: its whole array goes.
fn remove(tree: &mut toml::Table, path: &KeyPath) -> bool {
    let mut segments = path.segments();
    while let Some((Segment::Index(_), rest)) = segments.split_last() {
        segments = rest;
    }
    let Some((Segment::Key(last), parents)) = segments.split_last() else {
        return false;
    };
    let mut root = toml::Value::Table(std::mem::take(tree));
    let parent = parents.iter().try_fold(&mut root, |value, segment| match segment {
        Segment::Key(key) => value.get_mut(key.as_str()),
        Segment::Index(index) => value.get_mut(*index),
    });
    let removed = parent.and_then(toml::Value::as_table_mut).and_then(|t| t.remove(last));
    if let toml::Value::Table(table) = root {
        *tree = table;
    }
    removed.is_some()
}

#[cfg(test)]
mod tests {
    use super::super::env::MapEnv;
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, &MapEnv::new())
    }

    fn parse_errors(text: &str, env: &MapEnv) -> Vec<FieldError> {
        match Config::from_toml_str(text, env) {
            Ok(config) => panic!("expected a parse error, got {config:?}"),
            Err(ConfigError::Parse(errors)) => errors,
            Err(other) => panic!("expected a parse error, got {other}"),
        }
    }

    fn at(line: usize, column: usize) -> Option<Origin> {
        Some(Origin::File { line, column })
    }

    fn env_origin(var: &str) -> Option<Origin> {
        Some(Origin::Env { var: var.into() })
    }

    #[test]
    fn empty_text_is_the_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn file_values_are_read() {
        let config = parse(
            "version = 1\n[server]\nlisten = \"0.0.0.0:9000\"\n[server.tls]\ncert_path = \"c\"\n\
             [engine]\ntype = \"memory\"\n[[channels.namespaces]]\nname = \"chat\"\npresence = true\n",
        )
        .unwrap();
        assert_eq!(config.server.listen, "0.0.0.0:9000");
        assert_eq!(config.server.tls.cert_path, "c");
        assert_eq!(config.channels.namespaces.len(), 1);
        assert!(config.channels.namespaces[0].presence);
        assert_eq!(config.client, Config::default().client);
    }

    #[test]
    fn syntax_error_has_line_and_column() {
        let errors = parse_errors("version = 1\n[server]\nlisten = \n", &MapEnv::new());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "");
        assert!(matches!(errors[0].origin, Some(Origin::File { line: 3, .. })), "{errors:?}");
    }

    #[test]
    fn duplicate_key_is_a_syntax_error_with_its_line() {
        let errors = parse_errors("[api]\nkey = \"a\"\nkey = \"b\"\n", &MapEnv::new());
        assert!(matches!(errors[0].origin, Some(Origin::File { line: 3, .. })), "{errors:?}");
    }

    #[test]
    fn unknown_key_in_file_names_path_and_line() {
        let errors = parse_errors("version = 1\n[server]\n  bogus = 1\n", &MapEnv::new());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "server.bogus");
        assert!(errors[0].message.starts_with("unknown key `bogus`"), "{}", errors[0].message);
        assert_eq!(errors[0].origin, at(3, 3));
        assert_eq!(errors[0].to_string().split(", expected").next().unwrap(), "server.bogus: unknown key `bogus`");
    }

    #[test]
    fn unknown_top_level_and_nested_keys() {
        let errors = parse_errors("colour = \"red\"\n", &MapEnv::new());
        assert_eq!(errors[0].path, "colour");
        assert_eq!(errors[0].origin, at(1, 1));

        let errors = parse_errors("[server.tls]\ncert = \"x\"\n", &MapEnv::new());
        assert_eq!(errors[0].path, "server.tls.cert");
        assert_eq!(errors[0].origin, at(2, 1));

        let errors = parse_errors("server.tls.cert = \"x\"\n", &MapEnv::new());
        assert_eq!(errors[0].path, "server.tls.cert");
        assert_eq!(errors[0].origin, at(1, 12));
    }

    #[test]
    fn unknown_key_in_a_namespace_names_its_index() {
        let text = "[[channels.namespaces]]\nname = \"ab\"\n\n[[channels.namespaces]]\n\
                    name = \"cd\"\nhistory_len = 5\n";
        let errors = parse_errors(text, &MapEnv::new());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "channels.namespaces[1].history_len");
        assert_eq!(errors[0].origin, at(6, 1));
    }

    #[test]
    fn wrong_types_name_path_and_line() {
        let errors = parse_errors("[client]\n\nping_interval_secs = \"soon\"\n", &MapEnv::new());
        assert_eq!(errors[0].path, "client.ping_interval_secs");
        assert!(errors[0].message.contains("invalid type: string \"soon\""), "{errors:?}");
        assert_eq!(errors[0].origin, at(3, 1));

        let errors = parse_errors("[server]\nmax_connections = -1\n", &MapEnv::new());
        assert_eq!(errors[0].path, "server.max_connections");
        assert_eq!(errors[0].origin, at(2, 1));

        let errors = parse_errors("[engine]\ntype = \"sqlite\"\n", &MapEnv::new());
        assert_eq!(errors[0].path, "engine.type");
        assert!(errors[0].message.contains("unknown variant `sqlite`"), "{errors:?}");

        let errors = parse_errors("server = 5\n", &MapEnv::new());
        assert_eq!(errors[0].path, "server");
    }

    #[test]
    fn wrong_element_type_names_the_element() {
        let text = "[server]\nallowed_origins = [\n  \"https://a.com\",\n  7,\n]\n";
        let errors = parse_errors(text, &MapEnv::new());
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "server.allowed_origins[1]");
        assert_eq!(errors[0].origin, at(4, 3));
    }

    #[test]
    fn every_parse_problem_is_reported_together() {
        let text = "versoin = 1\n[server]\nlisten = 8000\nmax_conns = 1\n\
                    [client]\nping_interval_secs = true\n[engine]\ntype = \"sqlite\"\n";
        let errors = parse_errors(text, &MapEnv::new());
        let found: Vec<(String, Option<Origin>)> = errors.into_iter().map(|e| (e.path, e.origin)).collect();
        assert_eq!(
            found,
            [
                ("versoin".to_owned(), at(1, 1)),
                ("server.listen".to_owned(), at(3, 1)),
                ("server.max_conns".to_owned(), at(4, 1)),
                ("client.ping_interval_secs".to_owned(), at(6, 1)),
                ("engine.type".to_owned(), at(8, 1)),
            ]
        );
    }

    #[test]
    fn env_overrides_apply_with_types() {
        let env = MapEnv::new()
            .with("SWITCHBOARD_CLIENT__PING_INTERVAL_SECS", "10")
            .with("SWITCHBOARD_CLIENT__ALLOW_ANONYMOUS", "true")
            .with("SWITCHBOARD_API__KEY", "abc")
            .with("SWITCHBOARD_AUTH__TOKEN_HMAC_SECRET", "12345")
            .with("SWITCHBOARD_SERVER__TLS__CERT_PATH", "/etc/cert.pem")
            .with("SWITCHBOARD_SERVER__ALLOWED_ORIGINS", r#"["https://a.com"]"#)
            .with("SWITCHBOARD_ENGINE__TYPE", "memory");
        let config = Config::from_toml_str("", &env).unwrap();
        assert_eq!(config.client.ping_interval_secs, 10);
        assert!(config.client.allow_anonymous);
        assert_eq!(config.api.key, "abc");
        assert_eq!(config.auth.token_hmac_secret, "12345");
        assert_eq!(config.server.tls.cert_path, "/etc/cert.pem");
        assert_eq!(config.server.allowed_origins, ["https://a.com"]);
    }

    #[test]
    fn env_overrides_win_over_the_file() {
        let env = MapEnv::new().with("SWITCHBOARD_SERVER__LISTEN", "127.0.0.1:9");
        let config = Config::from_toml_str("[server]\nlisten = \"127.0.0.1:1\"\nmax_connections = 5\n", &env).unwrap();
        assert_eq!(config.server.listen, "127.0.0.1:9");
        assert_eq!(config.server.max_connections, 5);
    }

    #[test]
    fn env_can_replace_a_table_and_then_refine_it() {
        let env = MapEnv::new()
            .with("SWITCHBOARD_SERVER__TLS", r#"{ cert_path = "c", key_path = "k" }"#)
            .with("SWITCHBOARD_SERVER__TLS__KEY_PATH", "k2");
        let config = Config::from_toml_str("", &env).unwrap();
        assert_eq!(config.server.tls.cert_path, "c");
        assert_eq!(config.server.tls.key_path, "k2");
    }

    #[test]
    fn env_can_set_namespaces_as_a_toml_array() {
        let env = MapEnv::new().with("SWITCHBOARD_CHANNELS__NAMESPACES", r#"[{ name = "chat", presence = true }]"#);
        let config = Config::from_toml_str("", &env).unwrap();
        assert_eq!(config.channels.resolve("chat:1").map(|o| o.presence), Some(true));
    }

    #[test]
    fn unknown_env_key_names_the_variable() {
        let env = MapEnv::new().with("SWITCHBOARD_CLIENT__PING_INTERVAL", "10");
        let errors = parse_errors("", &env);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "client.ping_interval");
        assert_eq!(errors[0].origin, env_origin("SWITCHBOARD_CLIENT__PING_INTERVAL"));
        assert!(errors[0].to_string().contains("(set by SWITCHBOARD_CLIENT__PING_INTERVAL)"));

        let env = MapEnv::new().with("SWITCHBOARD_NOPE__KEY", "1");
        let errors = parse_errors("[server]\n", &env);
        assert_eq!(errors[0].path, "nope");
        assert_eq!(errors[0].origin, env_origin("SWITCHBOARD_NOPE__KEY"));

        let env = MapEnv::new().with("SWITCHBOARD_SERVER__TLS", r#"{ cert = "x" }"#);
        let errors = parse_errors("[server.tls]\ncert_path = \"a\"\n", &env);
        assert_eq!(errors[0].path, "server.tls.cert");
        assert_eq!(errors[0].origin, env_origin("SWITCHBOARD_SERVER__TLS"));
    }

    #[test]
    fn wrong_env_type_names_the_variable() {
        let env = MapEnv::new().with("SWITCHBOARD_CLIENT__PING_INTERVAL_SECS", "soon");
        let errors = parse_errors("[client]\nping_interval_secs = 5\n", &env);
        assert_eq!(errors[0].path, "client.ping_interval_secs");
        assert!(errors[0].message.contains("invalid type: string \"soon\""));
        assert_eq!(errors[0].origin, env_origin("SWITCHBOARD_CLIENT__PING_INTERVAL_SECS"));
    }

    #[test]
    fn env_cannot_descend_into_values_or_arrays() {
        let env = MapEnv::new()
            .with("SWITCHBOARD_CLIENT__PING_INTERVAL_SECS__X", "1")
            .with("SWITCHBOARD_CHANNELS__NAMESPACES__NAME", "x")
            .with("SWITCHBOARD_API____KEY", "x");
        let text = "[client]\nping_interval_secs = 5\n[[channels.namespaces]]\nname = \"ab\"\n";
        let errors = parse_errors(text, &env);
        let found: Vec<(&str, Option<Origin>)> = errors.iter().map(|e| (e.path.as_str(), e.origin.clone())).collect();
        assert_eq!(
            found,
            [
                ("", env_origin("SWITCHBOARD_API____KEY")),
                ("channels.namespaces", env_origin("SWITCHBOARD_CHANNELS__NAMESPACES__NAME")),
                ("client.ping_interval_secs", env_origin("SWITCHBOARD_CLIENT__PING_INTERVAL_SECS__X")),
            ]
        );
        assert!(errors[1].message.contains("is an array"));
        assert!(errors[2].message.contains("type integer, not a table"), "{}", errors[2]);

        // Without a file value in the way the override builds a table, which
        // then has the wrong type.
        let env = MapEnv::new().with("SWITCHBOARD_CLIENT__PING_INTERVAL_SECS__X", "1");
        let errors = parse_errors("", &env);
        assert_eq!(errors[0].path, "client.ping_interval_secs");
        assert!(errors[0].message.contains("invalid type: map"), "{}", errors[0]);
        assert_eq!(errors[0].origin, env_origin("SWITCHBOARD_CLIENT__PING_INTERVAL_SECS__X"));
    }

    #[test]
    fn env_and_file_problems_are_reported_together() {
        let env = MapEnv::new().with("SWITCHBOARD_API__KEE", "x");
        let errors = parse_errors("[client]\nbogus = 1\n", &env);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["client.bogus", "api.kee"], "file problems come first");
    }

    #[test]
    fn load_reports_unreadable_files() {
        let error = Config::load(Path::new("/nonexistent/switchboard.toml")).unwrap_err();
        assert!(matches!(error, ConfigError::Read { .. }));
        assert!(error.to_string().starts_with("cannot read config file /nonexistent/switchboard.toml: "));
    }
}
